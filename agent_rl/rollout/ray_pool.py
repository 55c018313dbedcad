"""Envs on Ray worker processes: several envs per worker; a worker that dies or hangs is replaced.

Each worker is a Ray actor holding an `EnvSlots` (the envs of its slots: slot i lives on worker
i mod N). A pool call sends each worker one batch, the resets or steps of all its slots at once, so a
turn costs one round trip per worker, and the workers run their batches in parallel.

Registration inside the workers (peers' item 9): the pool ships `make_env` (for registered envs a
`functools.partial(make, id, **kwargs)`, i.e. an id and kwargs) and each worker first imports the
configured `modules` (a user's `register()` calls), then builds its envs through `agent_rl.registry`,
which runs the `agent_rl.envs` entry points in that process. An id known to the driver only fails
with an error saying so.

Failures: every call waits at most `timeout_s` (`ray.wait`). A worker that has not answered by then is
killed (`ray.kill`), one that died meanwhile (a crashed env engine, `os._exit`, the OOM killer) is
noticed through Ray's actor error; either way a fresh worker takes its place, and every slot that
lived on it is reported lost (`PoolReply.lost`, with the reason) so the collector restarts those
episodes. An exception raised by an env is no loss: the worker replaces that env, as in process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError

from agent_rl.env_api import TextEnv
from agent_rl.registry import UnknownEnvError
from agent_rl.rollout.envpool import EnvPool, EnvResult, EnvSlots, PoolReply, import_modules

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # a worker that cannot start in this time (no free CPU in the cluster?) is an error
CLOSE_TIMEOUT_S = 10.0  # envs get this long to close (end their engines) before their worker is killed


class EnvWorker:
    """One worker process's envs (runs as a Ray actor)."""

    def __init__(self, make_env: Callable[[], TextEnv], modules: Sequence[str]) -> None:
        import_modules(modules)
        self.make_env = make_env
        self.slots = EnvSlots(self._build)

    def pid(self) -> int:
        return os.getpid()

    def reset(self, calls: dict[int, tuple[int, int]]) -> dict[int, EnvResult]:
        return self.slots.reset(calls)

    def step(self, actions: dict[int, str]) -> dict[int, EnvResult]:
        return self.slots.step(actions)

    def close(self) -> None:
        self.slots.close()

    def _build(self) -> TextEnv:
        try:
            return self.make_env()
        except UnknownEnvError as err:
            raise UnknownEnvError(
                f"in an env worker: {err}. An id registered in the driver by register() is unknown to the "
                "workers: list the module that registers it in rollout.worker_modules, or register it through "
                "the agent_rl.envs entry-point group") from err


class RayEnvPool(EnvPool):
    """`workers` Ray actors holding the envs; a call waits at most `timeout_s` for each worker's batch.

    Starts a local Ray session (`ray.init`) unless one is running; a session it started outlives the
    pool (Ray ends it at exit), so collectors built one after another do not pay Ray's start each time.
    Each worker asks Ray for one CPU; a session started here declares at least one CPU per worker.
    """

    def __init__(self, make_env: Callable[[], TextEnv], workers: int, timeout_s: float,
                 modules: Sequence[str] = ()) -> None:
        if workers < 1:
            raise ValueError(f"a Ray env pool needs at least one worker, got {workers}")
        if not ray.is_initialized():
            ray.init(num_cpus=max(os.cpu_count() or 1, workers), include_dashboard=False,
                     logging_level=logging.WARNING)
        self.make_env = make_env
        self.count = workers
        self.timeout_s = timeout_s
        self.modules = tuple(modules)
        self._actor = ray.remote(num_cpus=1, max_restarts=0)(EnvWorker)
        self.workers: list[Any] = []  # actor handles, started on first use
        self.pids: list[int] = []  # their process ids
        self._slots: list[set[int]] = []  # per worker, the slots whose env it holds
        self.restarts = 0  # workers replaced so far (died or hung)

    def worker_of(self, slot: int) -> int:
        return slot % self.count

    def reset(self, calls: dict[int, tuple[int, int]]) -> PoolReply:
        return self._call("reset", calls)

    def step(self, actions: dict[int, str]) -> PoolReply:
        return self._call("step", actions)

    def close(self) -> None:
        if not self.workers:
            return
        ray.wait([w.close.remote() for w in self.workers], num_returns=len(self.workers), timeout=CLOSE_TIMEOUT_S)
        for worker in self.workers:
            ray.kill(worker, no_restart=True)
        self.workers, self.pids, self._slots = [], [], []

    def _call(self, method: str, payload: dict[int, Any]) -> PoolReply:
        if not self.workers:
            self.workers = [self._spawn() for _ in range(self.count)]
            self.pids = self._started(self.workers)
            self._slots = [set() for _ in range(self.count)]
        parts: dict[int, dict[int, Any]] = {}
        for slot, value in payload.items():
            parts.setdefault(self.worker_of(slot), {})[slot] = value
        refs = {w: getattr(self.workers[w], method).remote(part) for w, part in parts.items()}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=self.timeout_s)
        answered = set(ready)
        reply = PoolReply()
        for w, ref in refs.items():
            self._slots[w] |= parts[w].keys()
            where = f"env worker {w} (pid {self.pids[w]})"
            if ref not in answered:
                self._replace(w, f"{where} answered no {method} of {len(parts[w])} envs within {self.timeout_s:g} s "
                                 "(an env hung); it was killed", reply)
                continue
            try:
                reply.results.update(ray.get(ref))
            except RayTaskError as err:  # the worker raised itself: an env that cannot be built, a bug
                raise RuntimeError(f"{where} failed a {method}: {type(err.cause).__name__}: {err.cause}") from err
            except RayError as err:  # the process is gone: a crashed engine, os._exit, the OOM killer
                message = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
                self._replace(w, f"{where} died during a {method}: {type(err).__name__}: {message}", reply)
        return reply

    def _replace(self, w: int, reason: str, reply: PoolReply) -> None:
        """Kill worker `w`, start a fresh one in its place, and report every slot it held as lost."""
        logger.warning("%s; a fresh worker replaces it and its %d episodes restart", reason, len(self._slots[w]))
        reply.lost.update(dict.fromkeys(self._slots[w], reason))
        self._slots[w] = set()
        ray.kill(self.workers[w], no_restart=True)
        self.workers[w] = self._spawn()
        self.pids[w] = self._started([self.workers[w]])[0]
        self.restarts += 1

    def _spawn(self) -> Any:
        return self._actor.remote(self.make_env, self.modules)

    def _started(self, workers: list[Any]) -> list[int]:
        """Wait until `workers` run (their modules imported); their pids."""
        try:
            return ray.get([w.pid.remote() for w in workers], timeout=START_TIMEOUT_S)
        except GetTimeoutError as err:
            raise RuntimeError(f"{len(workers)} env worker(s) did not start within {START_TIMEOUT_S:g} s: does the "
                               "Ray cluster have a free CPU for each? (rollout.env_workers)") from err
        except RayError as err:
            raise RuntimeError(f"an env worker failed to start: {err}") from err
