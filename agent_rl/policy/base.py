"""What the collector asks of a policy: one batched call per turn for every live episode."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class PolicyRequest:
    """One live episode's turn: the chat messages the memory built, and the env's info."""

    messages: list[dict[str, str]]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class PolicyOutput:
    """What the policy produced for one request.

    Token-level policies fill `prompt_ids`, `token_ids` and `logprobs` with the exact ids they were
    fed and sampled; the trainer uses them as they are. Policies without tokens (expert, random,
    HTTP) leave them empty.
    """

    text: str
    prompt_text: str = ""
    prompt_ids: list[int] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    entropy: list[float] | None = None  # per sampled token, where the policy computes it


class Policy(Protocol):
    def act(self, requests: list[PolicyRequest]) -> list[PolicyOutput]:
        """Answer every request (one generate call for the whole batch)."""
        ...
