"""The SFT warm-start on TRL's `SFTTrainer` (`sft.backend: trl`, needs agent-rl[trl]).

The demonstration rows go in already tokenized (`input_ids` = the step's exact prompt + response ids,
`completion_mask` = 1 on the response), with `completion_only_loss`, so TRL trains the very tokens and
mask our loop trains (`agent_rl.train.sft.sft_train`): nothing is re-tokenized or re-templated.
The settings are ours mapped onto TRL's: same epochs, lr (constant, no warm-up), rows per optimizer
step, micro-batches, gradient clip and weight decay, token-mean NLL.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase, PrinterCallback, TrainerCallback

from agent_rl.data import Trajectory
from agent_rl.train.rows import build_token_rows, steps_of


def require_trl() -> None:
    try:
        import trl  # noqa: F401
    except ImportError as err:
        raise ImportError("sft.backend=trl needs TRL: pip install 'agent-rl[trl]'") from err


def micro_batch_size(batch_rows: int, micro_batch_rows: int) -> int:
    """The largest micro-batch of at most `micro_batch_rows` that divides `batch_rows` (TRL accumulates
    whole micro-batches, so an optimizer step then sees exactly `batch_rows` rows, as ours does)."""
    return next(size for size in range(min(batch_rows, micro_batch_rows), 0, -1) if batch_rows % size == 0)


class _EpochLoss(TrainerCallback):
    """Collects the logged loss of every optimizer step and reports each epoch's mean."""

    def __init__(self, on_epoch: Callable[[int, float], None] | None) -> None:
        self.on_epoch = on_epoch
        self.step_losses: list[float] = []
        self.epoch_losses: list[float] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.step_losses.append(float(logs["loss"]))

    def on_epoch_end(self, args, state, control, **kwargs):
        self.epoch_losses.append(float(np.mean(self.step_losses)) if self.step_losses else float("nan"))
        self.step_losses = []
        if self.on_epoch is not None:
            self.on_epoch(len(self.epoch_losses) - 1, self.epoch_losses[-1])


def trl_sft_train(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    demonstrations: list[Trajectory],
    epochs: int,
    lr: float,
    batch_rows: int,
    micro_batch_rows: int,
    grad_clip: float,
    weight_decay: float,
    on_epoch: Callable[[int, float], None] | None = None,
    seed: int = 0,
) -> list[float]:
    """`sft_train`'s contract on TRL's SFTTrainer: trains `model` in place; the mean loss per epoch.

    One difference TRL brings: transformers' Trainer exempts biases and norm weights from weight decay.
    """
    require_trl()
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    steps = steps_of(demonstrations)
    if not steps:
        raise ValueError("no successful expert demonstrations to fine-tune on")
    prompts, responses = build_token_rows(steps, np.zeros(len(steps)), tokenizer.pad_token_id).sequences()
    rows = Dataset.from_dict({
        "input_ids": [p + r for p, r in zip(prompts, responses, strict=True)],
        "completion_mask": [[0] * len(p) + [1] * len(r) for p, r in zip(prompts, responses, strict=True)],
    })
    micro = micro_batch_size(batch_rows, micro_batch_rows)
    callback = _EpochLoss(on_epoch)
    with tempfile.TemporaryDirectory(prefix="agent_rl_trl_sft_") as scratch:  # TRL wants an output_dir; we save
        args = SFTConfig(
            output_dir=scratch, num_train_epochs=epochs, learning_rate=lr, lr_scheduler_type="constant",
            warmup_steps=0, per_device_train_batch_size=micro, gradient_accumulation_steps=batch_rows // micro,
            max_grad_norm=grad_clip, weight_decay=weight_decay, optim="adamw_torch", completion_only_loss=True,
            max_length=None, seed=seed, logging_steps=1, save_strategy="no", report_to="none",
            disable_tqdm=True, bf16=False, fp16=False, dataloader_num_workers=0, dataloader_pin_memory=False,
            # TRL defaults to activation checkpointing and bf16; our loop does neither (model dtype, no recompute)
            activation_checkpointing=False, gradient_checkpointing=None,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                             callbacks=[callback])
        trainer.remove_callback(PrinterCallback)  # it prints every step's log; the epochs go to `on_epoch`
        trainer.train()
    model.train()
    return callback.epoch_losses
