"""The credit-assignment contract and the registry of methods.

A credit assigner is a pure function of a batch's `StepRows` (plus, for methods such as SPA or OPRL,
an auxiliary model the assigner owns): it returns one float64 advantage per step row, which the
trainer broadcasts to that row's response tokens. Each method lives in one file named after it,
with a frozen config dataclass whose field help cites the default's source (shared/specs/credit.md).

Methods that change more of the RL loop than the advantage (a learned reward model, a critic, a
replay buffer, branching rollouts, another loss or update order) override the training hooks of
`CreditAssigner`; the pure methods keep their do-nothing defaults. `RLTrainer.step` calls them in
this order each iteration:

    bind(trainer)                                   once, when the trainer is built
    collect(tasks, group_size, prefix)              rollouts (None = the trainer's collector)
    prepare(groups, iteration)                      reward shaping, replay injection
    annotate(trajectories, rows)                    extra per-row columns (rows.with_columns)
    __call__(rows)                                  the advantages
    make_loss(ppo) / update(token_rows, rows)       the policy update (None = PPO epochs)
    after_update(trajectories, rows, token_rows)    train the method's own models, fill buffers
    state_dict() / load_state_dict(state)           saved with every checkpoint

Registration is data, kept apart from construction (as with envs):

    register_credit("grpo", GRPO, "GRPO: trajectory-level group-normalised outcome")
    assigner = make_credit("grpo", norm_by_std=False)
    advantages = assigner(StepRows.from_trajectories(trajectories))
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from agent_rl.data import Group, StepRows, Trajectory

if TYPE_CHECKING:  # the trainer imports this module; the hooks only name its types
    from agent_rl.config import PPOConfig
    from agent_rl.train.rows import TokenRows
    from agent_rl.train.trainer import RLTrainer
    from agent_rl.train.update import TokenLoss


@dataclass(frozen=True)
class CreditConfig:
    """Base of every method's config: a frozen dataclass whose fields carry `metadata["help"]`."""


def check_choice(name: str, value: Any, allowed: Collection[Any]) -> None:
    """Raise ValueError unless `value` is one of `allowed` (config validation)."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {sorted(allowed)}")


def check_range(
    name: str, value: float, low: float, high: float = float("inf"), *, low_open: bool = False
) -> None:
    """Raise ValueError unless low <= value <= high (low < value when `low_open`)."""
    if not (low < value if low_open else low <= value) or not value <= high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}={value!r}: expected a value in {bracket}{low}, {high}]")


class CreditAssigner(ABC):
    """Maps a batch of step rows to one advantage per row.

    Subclasses set `config_cls` and implement `__call__`. Contract:
    - input rows are trajectory-major with steps in order (as `StepRows.from_trajectories` builds them);
    - output is a float64 array of shape `(rows.num_rows,)`, aligned with the rows;
    - group statistics never see padded or duplicated rows; a method that wants one score per
      trajectory de-duplicates (see `stats.first_per_segment`);
    - the result depends only on which rows are in the batch, not on the order of groups in it.
    """

    config_cls: ClassVar[type[CreditConfig]]

    def __init__(self, config: CreditConfig | None = None) -> None:
        config = self.config_cls() if config is None else config
        if not isinstance(config, self.config_cls):
            raise TypeError(
                f"{type(self).__name__} takes a {self.config_cls.__name__}, got {type(config).__name__}"
            )
        self.config = config

    @abstractmethod
    def __call__(self, rows: StepRows) -> np.ndarray:
        """Return one float64 advantage per step row of `rows`."""

    # Training hooks (see the module docstring). The defaults leave the RL loop as it is.

    def bind(self, trainer: RLTrainer) -> None:
        """Called once by the trainer that will use this method (build auxiliary models here)."""

    def collect(self, tasks: list[int], group_size: int, prefix: str) -> list[Group] | None:
        """Collect this iteration's groups, or None to let the trainer's collector do it."""
        return None

    def prepare(self, groups: list[Group], iteration: int) -> list[Group]:
        """Rewrite rewards or groups before credit (tool-call bonus, replayed successes); default: as is."""
        return groups

    def annotate(self, trajectories: list[Trajectory], rows: StepRows) -> StepRows:
        """Add the per-row columns `__call__` reads (e.g. learned step rewards); default: as is."""
        return rows

    def make_loss(self, ppo: PPOConfig) -> TokenLoss | None:
        """The token loss of the policy update, or None for PPO-clip (+ KL) as configured."""
        return None

    def update(self, token_rows: TokenRows, rows: StepRows) -> dict[str, float] | None:
        """Run the whole policy update, or None to let the trainer run its PPO epochs with `make_loss`."""
        return None

    def after_update(
        self, trajectories: list[Trajectory], rows: StepRows, token_rows: TokenRows
    ) -> dict[str, float]:
        """Work after the policy update (train an auxiliary model, fill a buffer); returns metrics."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume this method exactly (models, buffers, counters)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`; a method without state accepts only an empty one."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state but the checkpoint holds {sorted(state)}")


@dataclass(frozen=True)
class CreditSpec:
    """A registered method: its name, assigner class (which names its config class) and a one-liner."""

    name: str
    assigner: type[CreditAssigner]
    description: str

    @property
    def config(self) -> type[CreditConfig]:
        return self.assigner.config_cls


_REGISTRY: dict[str, CreditSpec] = {}


def register_credit(name: str, assigner: type[CreditAssigner], description: str) -> None:
    """Add a credit-assignment method under `name`; registering a name twice is an error."""
    if name in _REGISTRY:
        raise ValueError(
            f"credit method {name!r} is already registered ({_REGISTRY[name].assigner.__name__})"
        )
    _REGISTRY[name] = CreditSpec(name=name, assigner=assigner, description=description)


def credit_spec(name: str) -> CreditSpec:
    """The registered spec for `name`; ValueError listing the known names when there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown credit method {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def make_credit(name: str, **overrides: Any) -> CreditAssigner:
    """Build the assigner registered as `name`, its config being the defaults with `overrides` applied.

    Raises ValueError for an unknown name (listing the known ones), for an override key that is
    not a field of the method's config (naming it), and for an invalid value.
    """
    return credit_spec(name).assigner(credit_config(name, **overrides))


def credit_config(name: str, **overrides: Any) -> CreditConfig:
    """The config of method `name` with `overrides` applied (validated): unknown keys and bad values raise ValueError."""
    spec = credit_spec(name)
    known = {f.name for f in dataclasses.fields(spec.config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"credit method {name!r} has no option(s) {unknown} (algo.params); options: {sorted(known)}")
    try:
        return spec.config(**overrides)
    except ValueError as err:
        raise ValueError(f"algo.params of {name}: {err}") from err


def available_credit() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered method, sorted by name."""
    return [(spec.name, spec.description) for spec in sorted(_REGISTRY.values(), key=lambda s: s.name)]
