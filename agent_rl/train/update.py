"""Optimizer steps over token rows: micro-batches with gradient accumulation, for SFT and for PPO."""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import PreTrainedModel

from agent_rl.config import PPOConfig
from agent_rl.train.distributed import Distributed
from agent_rl.train.losses import low_var_kl, masked_sum, ppo_clip_loss, response_logprobs
from agent_rl.train.rows import TokenRows

LOCAL = Distributed()  # one process, plain torch

# (current log-probs, reference log-probs or None, micro-batch) -> (summed token loss, stats to average)
TokenLoss = Callable[[torch.Tensor, torch.Tensor | None, TokenRows], tuple[torch.Tensor, dict[str, float]]]


def optimizer_step(
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    rows: TokenRows,
    micro_batch_rows: int,
    loss_fn: TokenLoss,
    grad_clip: float,
    temperature: float = 1.0,
    dist: Distributed | None = None,
) -> dict[str, float]:
    """One optimizer step on `rows`; the loss is the mean over every response token of the mini-batch.

    Each micro-batch's summed loss is divided by the mini-batch's token count, so accumulating
    gradients over micro-batches gives exactly the gradient of one big batch (token-mean). The loss
    gets `rows.ref_logprobs` (computed once before the update, see RLTrainer._logprobs) or None.

    With `dist` over W ranks (every rank holding the same `rows`), each rank runs its share of the rows
    and divides by (tokens / W): the engines' gradient average over ranks then gives the same token-mean.
    """
    dist = dist or LOCAL
    total_tokens = float(rows.response_mask.sum().clamp(min=1.0))
    rank_tokens = total_tokens / dist.world
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {"loss": 0.0}
    chunks = dist.micro_batches(rows.num_rows, micro_batch_rows)
    for i, index in enumerate(chunks):
        micro = rows.select(index or [0])  # a padding pass (index None) runs one row with no weight
        with dist.micro_step(model, last=i == len(chunks) - 1):
            logp = response_logprobs(model, micro, temperature)
            loss_sum, stats = loss_fn(logp, micro.ref_logprobs, micro)
            dist.backward(loss_sum / rank_tokens if index else loss_sum * 0.0)
        if index:
            share = float(micro.response_mask.sum()) / total_tokens
            sums["loss"] += float(loss_sum.detach()) / total_tokens
            for name, value in stats.items():
                sums[name] = sums.get(name, 0.0) + value * share
    grad_norm = dist.clip_grad_norm(model, grad_clip)
    optimizer.step()
    return {**dist.sum_stats(sums), "grad_norm": grad_norm}


def sft_loss(logp: torch.Tensor, _ref: torch.Tensor | None, rows: TokenRows) -> tuple[torch.Tensor, dict[str, float]]:
    """Negative log-likelihood of the demonstrated response tokens (prompt tokens are not trained)."""
    return -masked_sum(logp, rows.response_mask), {}


def make_ppo_loss(config: PPOConfig) -> TokenLoss:
    def loss(logp: torch.Tensor, ref: torch.Tensor | None, rows: TokenRows) -> tuple[torch.Tensor, dict[str, float]]:
        terms = ppo_clip_loss(logp, rows.old_logprobs, rows.advantages, rows.response_mask,
                              config.clip_low, config.clip_high, config.dual_clip)
        stats = {"clip_fraction": terms.clip_fraction, "approx_kl": terms.approx_kl}
        total = terms.loss_sum
        if ref is not None:
            kl = masked_sum(low_var_kl(logp, ref), rows.response_mask)
            total = total + config.kl_coef * kl
            stats["kl_ref"] = float(kl.detach()) / float(rows.response_mask.sum().clamp(min=1.0))
        return total, stats

    return loss


def minibatches(num_rows: int, size: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """A shuffled split of row indices into mini-batches of `size` (the last one may be smaller)."""
    order = torch.randperm(num_rows, generator=generator)
    return [order[i:i + size] for i in range(0, num_rows, size)]
