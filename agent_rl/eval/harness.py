"""The evaluation harness: a policy over a named split with fixed seeds, written so it can be resumed.

Artifacts in `out_dir`:
- `episodes.jsonl`: one trajectory per line (the public trajectory format), appended as episodes end;
- `metadata.json`: versions, protocol, seeds, split and the caller's config;
- `table.md` / `table.csv`: the success-rate table (per task type and overall, mean ± std over seeds).
Re-running into the same `out_dir` skips the (seed, task) episodes already in `episodes.jsonl`.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agent_rl.data import Trajectory
from agent_rl.env_api import TextEnv
from agent_rl.eval.tables import EpisodeRecord, EvalProtocol, TableRow, summarize, write_tables
from agent_rl.io import read_trajectories, write_json, write_trajectories
from agent_rl.policy.base import Policy
from agent_rl.rollout.collector import Collector, EpisodeSpec
from agent_rl.rollout.envpool import EnvWorkers
from agent_rl.rollout.memory import HistoryMemory


def success_definition(temperature: float | None, won_means: str = "") -> str:
    """The stated success definition: what `won` means in the env, and the decoding that produced the episodes.

    `temperature=None` is for a policy that does not decode (the expert, the random baseline): no
    decoding is stated for it.
    """
    meaning = f" ({won_means})" if won_means else ""
    definition = f"the env reports won=True{meaning} before the turn limit (share of episodes)"
    if temperature is None:
        return definition
    decoding = "greedy decoding" if temperature == 0 else f"sampling at temperature {temperature}"
    return f"{definition}, {decoding}"


_VERSIONED = ("agent-rl", "torch", "transformers", "gymnasium", "textworld", "peft", "vllm")


@dataclass
class EvalResult:
    rows: list[TableRow]
    trajectories: list[Trajectory]
    out_dir: Path | None


def package_versions() -> dict[str, str]:
    """Versions of what shapes the numbers (benchmark libraries have changed scores between releases)."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def episode_specs(num_tasks: int, seeds: list[int], episodes: int | None) -> list[EpisodeSpec]:
    """Each seed plays tasks 0..episodes-1 of the split (cycling if there are fewer tasks); None = all."""
    count = num_tasks if episodes is None else episodes
    return [
        EpisodeSpec(task_index=i % num_tasks, seed=seed, group_id=f"seed{seed}", traj_id=f"seed{seed}/ep{i:05d}")
        for seed in seeds
        for i in range(count)
    ]


def evaluate(
    make_env: Callable[[], TextEnv],
    policy: Policy,
    protocol: EvalProtocol,
    memory: HistoryMemory,
    out_dir: str | Path | None = None,
    batch_size: int = 64,
    config: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    workers: EnvWorkers | None = None,
) -> EvalResult:
    """Run every episode of the protocol (skipping those already written) and tabulate them.

    The protocol's `catalog_size` is the number of tasks in the split (see `describe_tasks`).
    `workers` says where the envs run (default: in this process; see `agent_rl.rollout.envpool`).
    """
    num_tasks = protocol.catalog_size
    specs = episode_specs(num_tasks, list(protocol.seeds), protocol.episodes_per_seed)
    out = Path(out_dir) if out_dir is not None else None
    done: list[Trajectory] = []
    if out is not None and (out / "episodes.jsonl").exists():
        _check_same_protocol(out, protocol)
        done = read_trajectories(out / "episodes.jsonl")
    finished = {t.traj_id for t in done}
    todo = [s for s in specs if s.traj_id not in finished]
    if out is not None:
        write_json(out / "metadata.json", {"protocol": protocol.to_dict(), "versions": package_versions(),
                                           "config": config or {}, "num_tasks": num_tasks})
    collector = Collector(make_env, policy, memory, max_turns=protocol.max_steps, env_id=protocol.env_id,
                          workers=workers)
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            torch.manual_seed(chunk[0].seed * 1_000_003 + start)  # sampled evals repeat exactly
            trajectories = collector.run(chunk)
            if out is not None:
                write_trajectories(out / "episodes.jsonl", trajectories)
            done.extend(trajectories)
            if progress is not None:
                progress(len(chunk))
    finally:
        collector.close()
    wanted = {s.traj_id for s in specs}
    kept = [t for t in done if t.traj_id in wanted]
    rows = summarize(EpisodeRecord.from_trajectory(t, t.metadata["seed"]) for t in kept)
    if out is not None:
        write_tables(out, rows, protocol)
    return EvalResult(rows=rows, trajectories=kept, out_dir=out)


def _check_same_protocol(out: Path, protocol: EvalProtocol) -> None:
    """Resuming must not mix episodes of two different evaluations into one table."""
    metadata = out / "metadata.json"
    if not metadata.exists():
        return
    previous = json.loads(metadata.read_text()).get("protocol")
    if previous != protocol.to_dict():
        raise ValueError(f"{out} holds episodes of a different evaluation ({previous}); pick a new output directory")
