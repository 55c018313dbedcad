"""Step-wise training rows: one padded token row per agent step, with a mask on the policy's tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from agent_rl.data import Step, Trajectory


@dataclass
class TokenRows:
    """A right-padded batch of (prompt + response) sequences.

    Every tensor is (rows, length) and indexed by sequence position. `response_mask[i, j]` is 1
    exactly where position j holds a token the policy sampled; prompt tokens (system text, task,
    observations, history: everything the env or the framework wrote) and padding are 0, so only
    policy tokens are ever trained. `old_logprobs[i, j]` is the rollout-time log-prob of token j.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    old_logprobs: torch.Tensor
    advantages: torch.Tensor  # one scalar per row, broadcast over its response tokens by the loss

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    def select(self, index: Sequence[int] | torch.Tensor) -> TokenRows:
        index = torch.as_tensor(index, dtype=torch.long)
        picked = TokenRows(*(t[index] for t in (self.input_ids, self.attention_mask, self.response_mask,
                                                self.old_logprobs, self.advantages)))
        return picked.trimmed()

    def trimmed(self) -> TokenRows:
        """Drop the padding columns no row of this (sub-)batch needs."""
        width = int(self.attention_mask.sum(1).max())
        return TokenRows(self.input_ids[:, :width], self.attention_mask[:, :width], self.response_mask[:, :width],
                         self.old_logprobs[:, :width], self.advantages)


def steps_of(trajectories: Sequence[Trajectory]) -> list[Step]:
    """The steps in StepRows order (trajectory-major), so row i here is row i of `StepRows`."""
    return [step for trajectory in trajectories for step in trajectory.steps]


def build_token_rows(steps: Sequence[Step], advantages: np.ndarray, pad_id: int) -> TokenRows:
    """Lay out each step's exact prompt and response ids; nothing is re-tokenized."""
    if len(steps) != len(advantages):
        raise ValueError(f"{len(steps)} steps but {len(advantages)} advantages")
    missing = [i for i, s in enumerate(steps) if not s.prompt_ids or not s.response_ids]
    if missing:
        raise ValueError(
            f"{len(missing)} steps carry no token ids (first: row {missing[0]}); training needs trajectories "
            "from a token-level policy (HFPolicy, or ExpertPolicy given the model's ChatCodec)"
        )
    width = max(len(s.prompt_ids) + len(s.response_ids) for s in steps)
    n = len(steps)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    response_mask = torch.zeros((n, width), dtype=torch.float32)
    old_logprobs = torch.zeros((n, width), dtype=torch.float32)
    for row, step in enumerate(steps):
        p, r = len(step.prompt_ids), len(step.response_ids)
        input_ids[row, : p + r] = torch.tensor(step.prompt_ids + step.response_ids)
        attention[row, : p + r] = 1
        response_mask[row, p : p + r] = 1.0
        if step.logprobs:
            old_logprobs[row, p : p + r] = torch.tensor(step.logprobs)
    return TokenRows(input_ids, attention, response_mask, old_logprobs,
                     torch.as_tensor(np.asarray(advantages), dtype=torch.float32))
