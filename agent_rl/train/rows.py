"""Step-wise training rows: one token row per agent step, with a mask on the policy's tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from agent_rl.data import Step, Trajectory


@dataclass
class TokenRows:
    """A batch of (prompt + response) sequences, left-padded so every response ends in the last column.

    `input_ids` / `attention_mask` are (rows, width). The response-side tensors are (rows, R), R the
    longest response: column j describes sequence position `width - R + j`. `response_mask` is 1
    exactly on tokens the policy sampled; prompt tokens (system text, task, observations, history:
    everything the env or the framework wrote) and padding are 0, so only policy tokens are trained.
    Right-aligning the responses lets the trainer compute logits for the last R positions only,
    instead of for every prompt token.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor  # float (rows, R)
    old_logprobs: torch.Tensor  # float (rows, R): rollout-time log-probs of the sampled tokens
    advantages: torch.Tensor  # (rows,): one scalar per row, broadcast over its response tokens by the loss
    # float (rows, R): the frozen reference model's log-probs of the sampled tokens, laid out like
    # old_logprobs; None unless the trainer's log-prob phase filled them in (ppo.kl_coef > 0)
    ref_logprobs: torch.Tensor | None = None

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def position_ids(self) -> torch.Tensor:
        """Positions that skip the left padding, as the rollout's batched generate assigned them."""
        return (self.attention_mask.cumsum(-1) - 1).clamp(min=0)

    def sequences(self) -> tuple[list[list[int]], list[list[int]]]:
        """Each row's prompt ids and response ids, without padding (what the rollout saw and sampled)."""
        prompts, responses = [], []
        for ids, attention, mask in zip(self.input_ids, self.attention_mask, self.response_mask, strict=True):
            tokens = ids[attention.bool()].tolist()
            r = int(mask.sum())
            prompts.append(tokens[:len(tokens) - r])
            responses.append(tokens[len(tokens) - r:])
        return prompts, responses

    def select(self, index: Sequence[int] | torch.Tensor) -> TokenRows:
        """Rows `index`, with the padding columns none of them needs dropped."""
        index = torch.as_tensor(index, dtype=torch.long)
        attention = self.attention_mask[index]
        response_mask = self.response_mask[index]
        width = int(attention.sum(1).max())
        responses = int((response_mask.sum(1)).max())
        ref = None if self.ref_logprobs is None else self.ref_logprobs[index][:, -responses:]
        return TokenRows(self.input_ids[index][:, -width:], attention[:, -width:], response_mask[:, -responses:],
                         self.old_logprobs[index][:, -responses:], self.advantages[index], ref)


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
    responses = max(len(s.response_ids) for s in steps)
    n = len(steps)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    response_mask = torch.zeros((n, responses), dtype=torch.float32)
    old_logprobs = torch.zeros((n, responses), dtype=torch.float32)
    for row, step in enumerate(steps):
        tokens = step.prompt_ids + step.response_ids
        r = len(step.response_ids)
        input_ids[row, width - len(tokens):] = torch.tensor(tokens)
        attention[row, width - len(tokens):] = 1
        response_mask[row, responses - r:] = 1.0
        if step.logprobs:
            old_logprobs[row, responses - r:] = torch.tensor(step.logprobs)
    return TokenRows(input_ids, attention, response_mask, old_logprobs,
                     torch.as_tensor(np.asarray(advantages), dtype=torch.float32))
