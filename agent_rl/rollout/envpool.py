"""Where a collector's envs live: an `EnvPool` resets and steps many envs per call, by slot.

The collector gives each episode a slot (an env) and, every turn, sends one batch: the actions of all
its live episodes. A pool answers each slot with the env's result, or with the error the env raised
(the pool has then closed that env and put a fresh one in the slot), or reports the slot as *lost*:
its env is gone with the process that held it (a Ray worker that died or hung, see `ray_pool.py`),
so the episode cannot continue and the collector restarts it (`Collector._restart_lost`).

- `InProcessEnvPool`: envs in this process, stepped one after another; nothing is ever lost.
- `RayEnvPool` (`agent_rl.rollout.ray_pool`, the `ray` extra): envs spread over worker processes.

`EnvWorkers` says which one a collector uses; `make_env_pool` builds it.
"""

from __future__ import annotations

import contextlib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent_rl.env_api import ActionSyntax, TextEnv

if TYPE_CHECKING:  # the config module sits above the rollout package; only its type is named here
    from agent_rl.config import RolloutConfig


@dataclass(frozen=True)
class Reset:
    """What `env.reset` returned, and how the env's actions are parsed (`TextEnv.action_syntax`)."""

    obs: str
    info: dict[str, Any]
    action_syntax: ActionSyntax


@dataclass(frozen=True)
class Stepped:
    """What `env.step` returned."""

    obs: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


@dataclass(frozen=True)
class EnvRaised:
    """The env raised (`"TypeName: message"`); the pool has already replaced it by a fresh env."""

    error: str


EnvResult = Reset | Stepped | EnvRaised


@dataclass
class PoolReply:
    """The answer to one pool call.

    `results` holds an entry for every slot of the call that got an answer. `lost` names every slot
    whose env was destroyed during the call, with the reason: the slots of the call that got no
    answer, and also other slots that lived in the same lost worker (their episodes are broken too).
    """

    results: dict[int, EnvResult] = field(default_factory=dict)
    lost: dict[int, str] = field(default_factory=dict)


class EnvPool(ABC):
    """Envs by slot (0, 1, ...). A slot's env is built on its first reset and kept across collector runs."""

    @abstractmethod
    def reset(self, calls: dict[int, tuple[int, int]]) -> PoolReply:
        """Reset each slot's env: `calls[slot] = (seed, task_index)`."""

    @abstractmethod
    def step(self, actions: dict[int, str]) -> PoolReply:
        """Step each slot's env with `actions[slot]`."""

    @abstractmethod
    def close(self) -> None:
        """Close every env (a later call builds them again)."""


class EnvSlots:
    """Envs by slot in one process, each call wrapped so that an env error costs its slot, not the batch.

    The in-process pool is one of these; every Ray worker holds one.
    """

    def __init__(self, make_env: Callable[[], TextEnv]) -> None:
        self.make_env = make_env
        self.envs: dict[int, TextEnv] = {}

    def reset(self, calls: dict[int, tuple[int, int]]) -> dict[int, EnvResult]:
        self._build(calls)
        return {slot: self._guard(slot, _reset, seed, task_index) for slot, (seed, task_index) in calls.items()}

    def step(self, actions: dict[int, str]) -> dict[int, EnvResult]:
        self._build(actions)
        return {slot: self._guard(slot, _step, action) for slot, action in actions.items()}

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()

    def _build(self, slots: dict[int, Any]) -> None:
        # Every missing env is built before any is used, in slot order (construction errors propagate:
        # an env that cannot be built at all is a configuration error, not a broken episode).
        for slot in sorted(set(slots) - set(self.envs)):
            self.envs[slot] = self.make_env()

    def _guard(self, slot: int, call: Callable[..., EnvResult], *args: Any) -> EnvResult:
        try:
            return call(self.envs[slot], *args)
        except Exception as err:  # noqa: BLE001 - a broken env must cost one episode, not the batch
            with contextlib.suppress(Exception):  # the env is already broken; closing it is best effort
                self.envs[slot].close()
            self.envs[slot] = self.make_env()
            return EnvRaised(f"{type(err).__name__}: {err}")


def _reset(env: TextEnv, seed: int, task_index: int) -> Reset:
    obs, info = env.reset(seed=seed, options={"task_index": task_index})
    return Reset(obs, info, env.action_syntax)


def _step(env: TextEnv, action: str) -> Stepped:
    obs, reward, terminated, truncated, info = env.step(action)
    return Stepped(obs, float(reward), bool(terminated), bool(truncated), info)


class InProcessEnvPool(EnvPool):
    """Envs in this process, stepped one after another (the default; nothing is ever lost)."""

    def __init__(self, make_env: Callable[[], TextEnv]) -> None:
        self.slots = EnvSlots(make_env)

    def reset(self, calls: dict[int, tuple[int, int]]) -> PoolReply:
        return PoolReply(self.slots.reset(calls))

    def step(self, actions: dict[int, str]) -> PoolReply:
        return PoolReply(self.slots.step(actions))

    def close(self) -> None:
        self.slots.close()


@dataclass(frozen=True)
class EnvWorkers:
    """Where a collector's envs run (config: `rollout.env_workers`, `env_timeout_s`, `env_max_retries`,
    `worker_modules`).

    count: 0 = in this process; N = on N Ray worker processes, episodes spread round-robin over them
        (slot i on worker i mod N), so each worker holds several envs and the G rollouts of a group land
        on different workers. As many envs as episodes run at once, as in process.
    timeout_s: the most one worker may take to answer one batch (its envs, one after another); a worker
        that does not is killed and replaced, and its episodes restart.
    max_retries: how often an episode whose worker was lost restarts from scratch (from its task and seed,
        a fresh env, new samples) before it is kept marked `metadata["env_error"]`. Restarting is the
        correct choice for RL: the lost steps were sampled by the current policy, but their env state is
        gone, and replaying them would need a deterministic env; the restart is recorded in
        `metadata["env_retries"]` and `metadata["env_retry_reasons"]`.
    modules: imported in every worker (and here) before an env is built: where a user's `register()`
        calls live. Ids from the `agent_rl.envs` entry-point group need none (workers discover them).
    """

    count: int = 0
    timeout_s: float = 120.0
    max_retries: int = 2
    modules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"env workers must be >= 0 (0 = envs in this process), got {self.count}")
        if self.timeout_s <= 0:
            raise ValueError(f"the env timeout must be > 0 seconds, got {self.timeout_s}")
        if self.max_retries < 0:
            raise ValueError(f"env max retries must be >= 0, got {self.max_retries}")
        if isinstance(self.modules, str) or not all(isinstance(m, str) and m for m in self.modules):
            raise ValueError(f"worker modules must be a list of module names, got {self.modules!r}")


    @classmethod
    def from_rollout(cls, rollout: RolloutConfig) -> EnvWorkers:
        """The settings of a run's config section `rollout` (env_workers, env_timeout_s, env_max_retries,
        worker_modules)."""
        return cls(rollout.env_workers, rollout.env_timeout_s, rollout.env_max_retries, tuple(rollout.worker_modules))


def import_modules(names: Sequence[str]) -> None:
    """Import each module (their import registers envs), naming the module that failed."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ImportError(f"worker module {name!r} cannot be imported ({err}); rollout.worker_modules lists "
                              "modules importable on the workers' sys.path") from err


def make_env_pool(make_env: Callable[[], TextEnv], workers: EnvWorkers) -> EnvPool:
    """The pool `workers` asks for; `make_env` must be picklable for Ray (e.g. `partial(make, id, **kwargs)`)."""
    if workers.count == 0:
        return InProcessEnvPool(make_env)
    try:
        from agent_rl.rollout.ray_pool import RayEnvPool
    except ImportError as err:
        raise ImportError(f"env workers > 0 run envs on Ray, which is not installed ({err}): "
                          "pip install 'agent-rl[ray]', or set rollout.env_workers=0") from err
    import_modules(workers.modules)
    return RayEnvPool(make_env, workers.count, workers.timeout_s, workers.modules)
