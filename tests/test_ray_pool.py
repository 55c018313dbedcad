"""Env workers on Ray: same trajectories as in process, and workers that die or hang lose no episode.

One local Ray session serves the whole module (its start costs seconds). The env is `ray_envs`'s
`raytest/steps-v0`, registered by `register()` in a module that every worker imports
(`EnvWorkers.modules`, i.e. `rollout.worker_modules`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import signal
import time
from pathlib import Path

import pytest
import ray_envs

from agent_rl.io import read_trajectories
from agent_rl.policy.base import PolicyOutput, PolicyRequest
from agent_rl.policy.baselines import ExpertPolicy
from agent_rl.registry import make, register
from agent_rl.rollout.collector import Collector, EpisodeSpec
from agent_rl.rollout.envpool import EnvWorkers
from agent_rl.rollout.memory import HistoryMemory

ray = pytest.importorskip("ray")

TIMEOUT_S = 2.0  # a hung worker is killed after this long


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray session for the module; workers find `ray_envs` next to this file."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).parent), saved) if p)
    ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = saved


def make_steps_env(**kwargs) -> functools.partial:
    return functools.partial(make, ray_envs.ENV_ID, expert=True, **kwargs)


def ray_collector(workers: int, policy=None, max_retries: int = 2, **env_kwargs) -> Collector:
    return Collector(make_steps_env(**env_kwargs), policy or ExpertPolicy(), HistoryMemory(), max_turns=6,
                     workers=EnvWorkers(workers, TIMEOUT_S, max_retries, ("ray_envs",)))


def group_specs(tasks: list[int], group_size: int) -> list[EpisodeSpec]:
    return [EpisodeSpec(task, 7, f"g{k}", f"g{k}/r{r}") for k, task in enumerate(tasks) for r in range(group_size)]


def test_ray_workers_give_the_same_trajectories_as_in_process(ray_session):
    specs = group_specs([0, 1, 2, 3], group_size=2)
    local = Collector(make_steps_env(), ExpertPolicy(), HistoryMemory(), max_turns=6)
    remote = ray_collector(workers=3)
    try:
        expected = [t.to_dict() for t in local.run(specs)]
        assert [t.to_dict() for t in remote.run(specs)] == expected
        assert [t.to_dict() for t in remote.run(specs)] == expected  # the workers' envs serve the next run
        assert len(set(remote.pool.pids)) == 3 and remote.pool.restarts == 0
    finally:
        local.close()
        remote.close()


class KillingPolicy:
    """The expert, which also SIGKILLs env worker 0 from outside before answering turn `at_turn`."""

    def __init__(self, at_turn: int) -> None:
        self.expert = ExpertPolicy()
        self.at_turn = at_turn
        self.turn = 0
        self.collector: Collector | None = None

    def act(self, requests: list[PolicyRequest]) -> list[PolicyOutput]:
        if self.turn == self.at_turn:
            os.kill(self.collector.pool.pids[0], signal.SIGKILL)
        self.turn += 1
        return self.expert.act(requests)


def test_workers_that_die_or_hang_mid_run_lose_and_duplicate_nothing(ray_session, tmp_path: Path):
    # task 1 exits its worker at its 2nd step, task 2 hangs its worker at its 1st step (each once), and
    # worker 0 is killed from outside before turn 1: three workers lost, their episodes restarted
    policy = KillingPolicy(at_turn=1)
    collector = ray_collector(workers=3, policy=policy, faults={1: ("exit", 2), 2: ("hang", 1)},
                              once_dir=str(tmp_path))
    policy.collector = collector
    specs = group_specs([0, 1, 2, 3], group_size=3)
    try:
        start = time.monotonic()
        trajectories = collector.run(specs)
        elapsed = time.monotonic() - start
        restarts = collector.pool.restarts
    finally:
        collector.close()
    assert [t.traj_id for t in trajectories] == [s.traj_id for s in specs]  # each spec exactly once, in order
    assert sorted(os.listdir(tmp_path)) == ["exit-task1", "hang-task2"]  # both faults fired
    assert restarts == 3
    for t, spec in zip(trajectories, specs):
        target = ray_envs.TARGETS[spec.task_index]
        assert "env_error" not in t.metadata and t.success and t.terminated
        # a restarted episode starts over: no step of its lost attempt is kept
        assert [s.anchor for s in t.steps] == [f"{spec.task_index}:{k}" for k in range(target)]
        assert len(t.metadata.get("env_retry_reasons", [])) == t.metadata.get("env_retries", 0)
    reasons = [r for t in trajectories for r in t.metadata.get("env_retry_reasons", [])]
    assert any(f"within {TIMEOUT_S:g} s" in r for r in reasons)  # the hang
    assert sum("died during a step" in r for r in reasons) >= 2  # the exit and the kill
    for group in ("g1", "g2"):  # the groups whose env exited / hung have a restarted member
        assert any(t.metadata.get("env_retries") for t in trajectories if t.group_id == group)
    assert elapsed < 10 * TIMEOUT_S + 30  # one timeout per hang, plus worker restarts on a loaded machine


def test_an_episode_that_keeps_killing_its_worker_is_kept_as_env_error(ray_session):
    # slot i runs on worker i: task 0 exits worker 0 at every first step, task 3 raises in worker 1
    collector = ray_collector(workers=3, max_retries=1, faults={0: ("exit", 1), 3: ("raise", 1)})
    specs = [EpisodeSpec(0, 1, "a", "a/r0"), EpisodeSpec(3, 1, "b", "b/r0"), EpisodeSpec(2, 1, "c", "c/r0")]
    try:
        doomed, raised, fine = collector.run(specs)
        assert collector.pool.restarts == 2
    finally:
        collector.close()
    assert doomed.metadata["env_retries"] == 1 and len(doomed.metadata["env_retry_reasons"]) == 2
    assert doomed.metadata["env_error"].startswith("env lost 2 times, 1 retries allowed")
    assert not doomed.success and doomed.steps == []
    # an env that raises is no lost worker: marked and replaced as in process, not retried
    assert raised.metadata["env_error"] == "RuntimeError: engine failed on task 3"
    assert "env_retries" not in raised.metadata and len(raised.steps) == 1
    assert fine.success and "env_retries" not in fine.metadata and "env_error" not in fine.metadata


def test_an_id_registered_only_in_the_driver_names_worker_modules(ray_session, monkeypatch):
    from agent_rl import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register("raytest/driver-only-v0", entry_point="ray_envs:StepsEnv")
    collector = Collector(functools.partial(make, "raytest/driver-only-v0"), ExpertPolicy(), HistoryMemory(),
                          max_turns=2, workers=EnvWorkers(1, TIMEOUT_S))
    try:
        with pytest.raises(RuntimeError, match="in an env worker: unknown env id 'raytest/driver-only-v0'.*"
                                               "rollout.worker_modules"):
            collector.run([EpisodeSpec(0, 0, "g", "g/r0")])
    finally:
        collector.close()


@pytest.mark.parametrize("settings, message", [
    ({"count": -1}, "env workers must be >= 0"),
    ({"timeout_s": 0}, "timeout must be > 0"),
    ({"max_retries": -2}, "max retries must be >= 0"),
    ({"modules": "ray_envs"}, "list of module names"),
])
def test_bad_worker_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        EnvWorkers(**settings)


def test_a_worker_module_that_cannot_be_imported_is_named():
    with pytest.raises(ImportError, match="worker module 'no_such_module_here'"):
        Collector(make_steps_env(), ExpertPolicy(), HistoryMemory(), max_turns=2,
                  workers=EnvWorkers(1, modules=("no_such_module_here",)))


class ForcedInc:
    """The tiny model's outputs (token ids, log-probs) with the text replaced by the right action; kills
    env worker 0 before turn 1."""

    def __init__(self, inner, collector: Collector) -> None:
        self.inner = inner
        self.collector = collector
        self.turn = 0

    def act(self, requests: list[PolicyRequest]) -> list[PolicyOutput]:
        if self.turn == 1:
            os.kill(self.collector.pool.pids[0], signal.SIGKILL)
        self.turn += 1
        return [dataclasses.replace(o, text="<action>inc</action>") for o in self.inner.act(requests)]


def test_the_trainer_collects_on_ray_workers_from_its_config(ray_session, tiny_model, tmp_path: Path):
    from agent_rl.config import AlgoConfig, EnvConfig, PPOConfig, RolloutConfig, TrainConfig
    from agent_rl.rollout.ray_pool import RayEnvPool
    from agent_rl.train.trainer import RLTrainer

    model, tokenizer = tiny_model
    config = TrainConfig(env=EnvConfig(id=ray_envs.ENV_ID, max_turns=4),
                         rollout=RolloutConfig(tasks_per_iteration=2, group_size=2, max_new_tokens=4, env_workers=2,
                                               env_timeout_s=30, worker_modules=["ray_envs"]),
                         algo=AlgoConfig(name="grpo"), ppo=PPOConfig(mini_batch_rows=8, micro_batch_rows=8))
    trainer = RLTrainer(config, model, tokenizer, functools.partial(make, ray_envs.ENV_ID), num_tasks=4,
                        out_dir=tmp_path)
    assert isinstance(trainer.collector.pool, RayEnvPool) and trainer.collector.workers.modules == ("ray_envs",)
    trainer.collector.policy = ForcedInc(trainer.policy, trainer.collector)
    try:
        metrics = trainer.step()
        assert trainer.collector.pool.restarts == 1
    finally:
        trainer.collector.close()
    trajectories = read_trajectories(tmp_path / "trajectories" / "iter-000001.jsonl")
    assert sorted(t.traj_id for t in trajectories) == [f"it1/g{k}/r{r}" for k in range(2) for r in range(2)]
    assert all(t.success and len(t.steps) == ray_envs.TARGETS[t.metadata["task_index"]] for t in trajectories)
    assert metrics["train/env_errors"] == 0 and metrics["train/success_rate"] == 1.0


def test_agent_rl_eval_runs_envs_on_workers(ray_session, tmp_path: Path, capsys):
    from agent_rl.cli import main

    out = tmp_path / "eval"
    main(["eval", "--env", ray_envs.ENV_ID, "--policy", "expert", "--env-workers", "2", "--worker-module", "ray_envs",
          "--max-turns", "4", "--seeds", "0", "1", "--out", str(out)])
    trajectories = read_trajectories(out / "episodes.jsonl")
    assert sorted(t.traj_id for t in trajectories) == [f"seed{s}/ep{i:05d}" for s in (0, 1) for i in range(4)]
    assert all(t.success for t in trajectories)
    assert (out / "table.md").read_text() in capsys.readouterr().out  # the table was printed
