"""The data model every part shares: Step, Trajectory, Group, and the columnar StepRows view.

These are plain dataclasses. A trajectory round-trips through JSON (and so JSONL) losslessly:
`Trajectory.from_dict(t.to_dict()) == t`. The JSONL format is public: users read it, `agent-rl view`
and the eval harness write it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Step:
    """One agent turn.

    `prompt_ids` and `response_ids` are the exact token ids the policy saw and sampled; the trainer
    uses them as they are (token-in / token-out), so nothing is ever re-tokenized.
    """

    obs: str  # what the env said before this turn (the observation the policy acted on)
    anchor: str  # canonical, history-free key of the env state at this turn
    prompt: str  # the prompt text the policy saw (with history)
    response: str  # the text the policy produced
    action: str | None  # what the env executed after parsing; None when the response did not parse
    reward: float  # env reward of this step (the invalid-action penalty is applied by credit, not here)
    valid: bool  # the response parsed into an admissible action
    prompt_ids: list[int] = field(default_factory=list)
    response_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # rollout-time, one per response token
    entropy: list[float] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # The credit method's advantage of this step, as the trainer trained it (written into
    # trajectories/iter-*.jsonl); None where no credit ran: eval episodes, a crashed env's steps.
    advantage: float | None = None


@dataclass
class Trajectory:
    """An episode: ordered steps plus what the episode was and how it ended.

    `terminated` (the env ended it: won or lost) and `truncated` (the step limit cut it) are kept
    apart: a truncated episode did not fail in the same way a lost one did.
    """

    task_id: str
    group_id: str
    traj_id: str
    steps: list[Step] = field(default_factory=list)
    outcome: float = 0.0  # episode score (sum of env rewards)
    success: bool = False
    terminated: bool = False
    truncated: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)  # env id, task type, seed, ...

    @property
    def num_invalid(self) -> int:
        return sum(not s.valid for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"trajectory record has unknown fields {sorted(unknown)}")
        steps = [Step(**s) for s in data.get("steps", [])]
        return cls(**{**data, "steps": steps})


@dataclass
class Group:
    """The G trajectories started from the same task and seed (identical start state)."""

    group_id: str
    task_id: str
    trajectories: list[Trajectory]


@dataclass(frozen=True)
class StepRows:
    """Column view of a batch of trajectories: one row per step, trajectory-major, steps in order.

    Credit assigners are pure functions of this view. Ids are small integer codes local to the
    batch (equal code == equal id), so group statistics are `np.bincount`/`np.unique` work
    instead of Python loops over rows.
    """

    group: np.ndarray  # int64 code of the group_id
    traj: np.ndarray  # int64 code of the traj_id
    step: np.ndarray  # int64 step index within its trajectory
    anchor: np.ndarray  # int64 code of the anchor (equal state <=> equal code)
    reward: np.ndarray  # float64 env reward of the step
    valid: np.ndarray  # bool
    outcome: np.ndarray  # float64 episode outcome of the row's trajectory
    truncated: np.ndarray  # bool: the row's trajectory was cut by the step limit
    action: np.ndarray  # int64 code of the executed action string (None, i.e. unparsable, has its own code)
    # Per-row float64 columns that an algorithm computes before credit (e.g. OPRL's implicit step
    # rewards, SPA's progress contributions), keyed by name; see `with_columns`.
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return int(self.group.shape[0])

    @classmethod
    def from_trajectories(cls, trajectories: Sequence[Trajectory]) -> StepRows:
        steps = [(t, s) for t in trajectories for s in t.steps]
        return cls(
            group=_codes(t.group_id for t, _ in steps),
            traj=_codes(t.traj_id for t, _ in steps),
            step=np.array([i for t in trajectories for i in range(len(t.steps))], dtype=np.int64),
            anchor=_codes(s.anchor for _, s in steps),
            reward=np.array([s.reward for _, s in steps], dtype=np.float64),
            valid=np.array([s.valid for _, s in steps], dtype=bool),
            outcome=np.array([t.outcome for t, _ in steps], dtype=np.float64),
            truncated=np.array([t.truncated for t, _ in steps], dtype=bool),
            action=_codes(s.action for _, s in steps),
        )

    def with_columns(self, **columns: np.ndarray) -> StepRows:
        """A copy with extra per-row columns added (or replaced); each must have one value per row."""
        for name, values in columns.items():
            if np.shape(values) != (self.num_rows,):
                raise ValueError(f"column {name!r} has shape {np.shape(values)}, expected ({self.num_rows},)")
        added = {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}
        return dataclasses.replace(self, extra={**self.extra, **added})


def _codes(values: Iterable[Any]) -> np.ndarray:
    """Map hashable values to int codes in order of first appearance."""
    table: dict[Any, int] = {}
    return np.array([table.setdefault(v, len(table)) for v in values], dtype=np.int64)
