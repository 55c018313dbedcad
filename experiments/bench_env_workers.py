"""Collector throughput against the number of Ray env workers, as ratios to one worker in the same run.

    python experiments/bench_env_workers.py --workers 1 2 4
    python experiments/bench_env_workers.py --env textworld/demo-v0 --env-arg split=train --skip-waiting

For each env and each worker count, `Collector.run` plays `--episodes` episodes at once (at most
`--turns` turns each) with an instant policy (RandomPolicy), so the figure is the env side alone:
env steps per second, the median over `--repeats` timed runs after one warm-up run (which starts the
workers and builds their envs). "in process" (`env_workers: 0`) is printed as a reference.

Two envs:
- the real engine given by `--env` (default TextWorld's demo suite): CPU-bound steps, so workers can
  only help as far as free cores allow;
- a waiting env (`--step-ms`, skipped with `--skip-waiting`): each step sleeps that long, standing for
  envs that wait on something outside the process (a sandbox, a web server, a simulator). It is
  defined in this script, so Ray ships its class to the workers by value; registered envs travel as
  an id and kwargs instead.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import ray

from agent_rl.env_api import TextEnv
from agent_rl.eval.runner import parse_env_args
from agent_rl.policy.baselines import RandomPolicy
from agent_rl.registry import make
from agent_rl.rollout.collector import Collector, EpisodeSpec
from agent_rl.rollout.envpool import EnvWorkers
from agent_rl.rollout.memory import HistoryMemory


class WaitingEnv(TextEnv):
    """Five rooms in a row; each step waits `step_ms` (like a call to a server) and moves one room."""

    def __init__(self, step_ms: float = 10.0) -> None:
        super().__init__()
        self.step_s = step_ms / 1000
        self.room = self.goal = 0

    @property
    def num_tasks(self) -> int:
        return 5

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self.goal, self.room = self.task_index(options), 0
        return self._obs(), self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        time.sleep(self.step_s)
        self.room = max(0, min(4, self.room + (1 if action == "go east" else -1)))
        won = self.room == self.goal
        return self._obs(), float(won), won, False, self._info()

    def _obs(self) -> str:
        return f"You are in room {self.room}."

    def _info(self) -> dict[str, Any]:
        return {"admissible_actions": ["go east", "go west"], "anchor": str(self.room), "won": self.room == self.goal,
                "task_type": "walk", "task_id": f"walk/{self.goal}", "task": f"Walk to room {self.goal}."}


def specs(num_tasks: int, episodes: int) -> list[EpisodeSpec]:
    return [EpisodeSpec(i % num_tasks, i, f"bench/t{i % num_tasks}", f"bench/e{i}") for i in range(episodes)]


def steps_per_second(make_env: Callable[[], TextEnv], workers: int, episodes: list[EpisodeSpec], turns: int,
                     repeats: int, timeout_s: float) -> float:
    """Median env steps/s of `Collector.run` over `repeats` timed runs after a warm-up run."""
    collector = Collector(make_env, RandomPolicy(seed=0), HistoryMemory(), max_turns=turns,
                          workers=EnvWorkers(workers, timeout_s))
    rates = []
    try:
        collector.run(episodes)  # starts the workers, builds one env per episode slot
        for _ in range(repeats):
            start = time.perf_counter()
            collector.run(episodes)
            rates.append(collector.timing.env_steps / (time.perf_counter() - start))
    finally:
        collector.close()
    return statistics.median(rates)


def measure(name: str, make_env: Callable[[], TextEnv], args: argparse.Namespace) -> None:
    env = make_env()
    episodes = specs(env.num_tasks, args.episodes)
    env.close()
    print(f"\n{name}: {args.episodes} episodes at once, at most {args.turns} turns, RandomPolicy, "
          f"median of {args.repeats} runs")
    print("| env workers | env steps/s | ratio to 1 worker |")
    print("|---|---|---|")
    rates = {n: steps_per_second(make_env, n, episodes, args.turns, args.repeats, args.timeout)
             for n in [0, *args.workers]}
    base = rates.get(1)
    for n, rate in rates.items():
        label = "0 (in process)" if n == 0 else str(n)
        ratio = f"{rate / base:.2f}" if base else "-"
        print(f"| {label} | {rate:.1f} | {ratio} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts (default: 1 2 4)")
    parser.add_argument("--env", default="textworld/demo-v0", help="the real engine (default: textworld/demo-v0)")
    parser.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument for --env, repeatable (default for TextWorld: split=train)")
    parser.add_argument("--episodes", type=int, default=32, help="episodes played at once (default: 32)")
    parser.add_argument("--turns", type=int, default=8, help="turn limit per episode (default: 8)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per setting (default: 2)")
    parser.add_argument("--step-ms", type=float, default=10.0, help="the waiting env's step time (default: 10)")
    parser.add_argument("--skip-waiting", action="store_true", help="measure the real engine only")
    parser.add_argument("--skip-engine", action="store_true", help="measure the waiting env only")
    parser.add_argument("--timeout", type=float, default=120.0, help="env_timeout_s of the pools (default: 120)")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.workers):
        parser.error("--workers takes counts >= 1 (in process is always measured)")
    # One CPU per worker for Ray's bookkeeping, whatever the machine has: the point is to see what they get.
    ray.init(num_cpus=max(args.workers), include_dashboard=False, logging_level=logging.WARNING)
    print(f"machine: {os.cpu_count()} CPUs visible (shared with other jobs); ray {ray.__version__}")
    try:
        if not args.skip_engine:
            kwargs = parse_env_args(args.env_arg)
            if args.env.startswith("textworld/") and args.env != "textworld/games-v0":
                kwargs.setdefault("split", "train")
            measure(f"{args.env} {kwargs}", functools.partial(make, args.env, **kwargs), args)
        if not args.skip_waiting:
            measure(f"waiting env ({args.step_ms:g} ms a step)", functools.partial(WaitingEnv, args.step_ms), args)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
