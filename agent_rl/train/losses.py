"""Policy losses on token rows: PPO-clip with dual-clip, the low-variance KL, masked means."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from agent_rl.train.rows import TokenRows


def response_logprobs(model: PreTrainedModel, rows: TokenRows, temperature: float = 1.0) -> torch.Tensor:
    """log p(token | everything before it) for the response columns of `rows`, shape (rows, R).

    Only the last R+1 positions' logits are computed (`logits_to_keep`): on step-wise rows the
    prompt is most of the sequence, and a full-vocabulary softmax over it would dominate the cost.
    The temperature is the one the rollout sampled with, so these describe the rollout's distribution.
    """
    device = next(model.parameters()).device
    responses = rows.response_mask.shape[1]
    input_ids = rows.input_ids.to(device)
    logits = model(
        input_ids=input_ids,
        attention_mask=rows.attention_mask.to(device),
        position_ids=rows.position_ids.to(device),
        logits_to_keep=responses + 1,
    ).logits[:, :-1].float() / temperature
    targets = input_ids[:, -responses:]
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1).cpu()


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum()


@dataclass
class PPOTerms:
    loss_sum: torch.Tensor  # summed over masked tokens; the caller divides by the mini-batch token count
    clip_fraction: float
    approx_kl: float


def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = 3.0,
) -> PPOTerms:
    """Clipped surrogate (Schulman et al. 2017, eq. 7) with dual-clip (Ye et al. 2020, eq. 4).

    `advantages` holds one value per row and is broadcast over the row's tokens. For negative
    advantages dual-clip bounds the loss by -A·c, so one stale token with a huge ratio cannot
    dominate the update.
    """
    adv = advantages[:, None].expand_as(logprobs)
    log_ratio = (logprobs - old_logprobs).clamp(-20.0, 20.0)  # keeps exp() finite on wild tokens
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    if dual_clip is not None:
        loss = torch.where(adv < 0, torch.minimum(loss, -adv * dual_clip), loss)
    tokens = mask.sum().clamp(min=1.0)
    with torch.no_grad():
        clip_fraction = float(masked_sum((clipped > unclipped).float(), mask) / tokens)
        approx_kl = float(masked_sum(-log_ratio, mask) / tokens)
    return PPOTerms(masked_sum(loss, mask), clip_fraction, approx_kl)


def low_var_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """The k3 estimator of KL(π || π_ref) per token (Schulman 2020): exp(r) - r - 1 with r = log π_ref/π.

    Non-negative and unbiased; clamped like verl's `low_var_kl` so early outliers stay bounded.
    """
    r = (ref_logprobs - logprobs).clamp(-20.0, 20.0)
    return (torch.exp(r) - r - 1.0).clamp(-10.0, 10.0)
