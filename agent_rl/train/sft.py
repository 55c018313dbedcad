"""Supervised warm-start on expert demonstrations (SFT then RL, as in "A Practitioner's Guide to
Multi-turn Agentic RL"): the env's expert plays the training tasks, the model imitates its responses."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agent_rl.data import Trajectory
from agent_rl.env_api import TextEnv
from agent_rl.policy.base import Policy
from agent_rl.rollout.collector import Collector, EpisodeSpec
from agent_rl.rollout.memory import HistoryMemory
from agent_rl.train.rows import build_token_rows, steps_of
from agent_rl.train.update import minibatches, optimizer_step, sft_loss


def collect_demonstrations(
    make_expert_env: Callable[[], TextEnv],
    expert: Policy,
    num_tasks: int,
    episodes_per_task: int,
    memory: HistoryMemory,
    max_turns: int,
    env_id: str,
    batch_size: int = 64,
) -> list[Trajectory]:
    """The expert's episodes on every training task; only the won ones are demonstrations."""
    specs = [EpisodeSpec(task, seed, f"demo/t{task}", f"demo/t{task}/e{seed}")
             for task in range(num_tasks) for seed in range(episodes_per_task)]
    collector = Collector(make_expert_env, expert, memory, max_turns, env_id=env_id)
    trajectories: list[Trajectory] = []
    try:
        for start in range(0, len(specs), batch_size):  # bounded: each live episode holds an env
            trajectories += collector.run(specs[start:start + batch_size])
    finally:
        collector.close()
    return [t for t in trajectories if t.success]


def sft_train(
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
) -> list[float]:
    """Token-mean negative log-likelihood of the expert responses; returns the mean loss per epoch."""
    steps = steps_of(demonstrations)
    if not steps:
        raise ValueError("no successful expert demonstrations to fine-tune on")
    rows = build_token_rows(steps, np.zeros(len(steps)), tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=weight_decay)
    model.train()
    losses = []
    for epoch in range(epochs):
        epoch_losses = [
            optimizer_step(model, optimizer, rows.select(index), micro_batch_rows, sft_loss, grad_clip)["loss"]
            for index in minibatches(rows.num_rows, batch_rows)
        ]
        losses.append(float(np.mean(epoch_losses)))
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    return losses


SFTTrain = Callable[..., list[float]]  # sft_train's signature


def sft_trainer(backend: str, seed: int) -> SFTTrain:
    """`sft.backend`: our loop (`sft_train`), or TRL's SFTTrainer on the same rows and mask (agent-rl[trl])."""
    if backend == "agent_rl":
        return sft_train
    from agent_rl.train.sft_trl import trl_sft_train

    return functools.partial(trl_sft_train, seed=seed)
