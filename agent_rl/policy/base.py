"""What the collector asks of a policy: one batched call per turn for every live episode."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class PolicyRequest:
    """One live episode's turn: the chat messages the memory built, and the env's info.

    `episode` (the trajectory's id) and `turn` (steps taken so far, 0 when it starts or restarts) let a
    policy keep per-episode state, e.g. the token transcript of `agent_rl.integrations.trl`.
    """

    messages: list[dict[str, str]]
    info: dict[str, Any] = field(default_factory=dict)
    episode: str = ""
    turn: int = 0


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


@runtime_checkable
class SyncedPolicy(Policy, Protocol):
    """A policy that generates on its own copy of the weights (vLLM): the trainer pushes them after updates."""

    def sync_weights(self, model: Any) -> None:
        """Load the trainer's current weights (the transformers model) into the engine."""
        ...

    def release_memory(self) -> None:
        """Rollouts are done until the next sync (a colocated engine frees the GPU for the update)."""
        ...

    def score(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> list[list[float]]:
        """The engine's log-probs (temperature 1) of each response given its prompt."""
        ...
