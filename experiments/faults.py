"""Fault-injection campaign: what survives SIGKILL, lost env workers, hostile actions, bad CLI input and sandbox attacks.

    python experiments/faults.py                                   # every campaign, writes experiments/results/faults/
    python experiments/faults.py --campaigns kill --kills 24       # one campaign (kill, ray, env-fuzz, cli-fuzz, sandbox)
    python experiments/faults.py --quick --out /tmp/faults --work /tmp/faults   # CI size (tests/test_faults.py)

Campaigns (a trial holds or breaks; every break is printed with what was seen):
- kill: a tiny-model training run (keydoor corridors, GRPO) is SIGKILLed at a random moment of a chosen phase
  (rollout, update, checkpoint write, SFT, evaluation), announced by the run itself through a phase file,
  then resumed with `agent-rl train --resume`. It holds when the finished run equals an uninterrupted one:
  the same metrics rows (time aside, each iteration once), bit-identical final weights and optimizer state,
  every iteration's trajectories once, the same held-out episodes and tables.
- ray: env workers on Ray are SIGKILLed or SIGSTOPped at random while episodes are played (group collection
  as the trainer does it, and the eval harness). It holds when the episodes recorded are exactly the
  episodes asked for, in order, none duplicated, each won by the expert or marked env_error, and no
  stopped worker is left behind.
- env-fuzz: `agent_rl.fuzz.fuzz_env` on every built-in env family (10,000 hostile actions in all).
- cli-fuzz: bad invocations of `agent-rl` (unknown keys, wrong types, negative sizes, missing paths,
  malformed YAML, unknown env ids and algos, bad flags). It holds when the command exits non-zero with one
  error line that names what was wrong, no traceback, and never gets as far as training or evaluating.
- sandbox: hostile commands in `tools.sandbox.Sandbox` (experiments/faults_sandbox.py).
Results: `<out>/trials.jsonl` (one line per trial, appended as it ends: a rerun skips finished trials),
`<out>/table.md` and `table.csv` (campaign, trials, held, broke, wall-clock).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import importlib.util
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CAMPAIGNS = ("kill", "ray", "env-fuzz", "cli-fuzz", "sandbox")
PHASES = ("rollout", "update", "checkpoint", "sft", "eval")
PHASE_FILE_ENV = "AGENT_RL_FAULTS_PHASE_FILE"
# The run every kill trial interrupts: the tiny model on key-door corridors, small enough for seconds an iteration
KILL_RUN = ["--env", "keydoor/corridor-v0", "--algo", "grpo", "env.max_turns=10", "env.kwargs.segments=1",
            "rollout.tasks_per_iteration=2", "rollout.group_size=2", "rollout.max_new_tokens=8", "sft.tasks=4",
            "sft.epochs=2", "eval.episodes=4", "optim.lr=1e-3", "ppo.mini_batch_rows=4", "ppo.micro_batch_rows=2",
            "model.tiny.num_layers=2", "train.num_threads=1", "iterations=3", "keep_checkpoints=5"]


Trial = dict[str, Any]  # {"campaign", "trial", "held", "detail", "seconds"}


def trial(campaign: str, name: str, held: bool, detail: str, seconds: float = 0.0) -> Trial:
    return {"campaign": campaign, "trial": name, "held": bool(held), "detail": detail, "seconds": round(seconds, 2)}


# --- kill: SIGKILL a training run in a chosen phase, resume it, compare with an uninterrupted run ----------------


def train_child(argv: list[str]) -> int:
    """`faults.py _train ARGS`: `agent-rl train ARGS`, announcing each phase it enters on $AGENT_RL_FAULTS_PHASE_FILE."""
    from agent_rl import cli
    from agent_rl.train.pipeline import TrainingRun
    from agent_rl.train.trainer import RLTrainer

    phase_file = open(os.environ[PHASE_FILE_ENV], "a", buffering=1)  # noqa: SIM115 - open for the process's life

    def announced(phase: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            phase_file.write(f"{phase} {time.monotonic():.4f}\n")
            try:
                return method(*args, **kwargs)
            finally:
                phase_file.write(f"end-{phase} {time.monotonic():.4f}\n")
        return wrapper

    for owner, attr, phase in ((RLTrainer, "_collect", "rollout"), (RLTrainer, "ppo_update", "update"),
                               (RLTrainer, "save", "checkpoint"), (TrainingRun, "sft", "sft"),
                               (TrainingRun, "evaluate", "eval")):
        setattr(owner, attr, announced(phase, getattr(owner, attr)))
    return cli.main(["train", *argv])


def _train_command(out: Path, phase_file: Path, resume: bool) -> tuple[list[str], dict[str, str]]:
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(Path(__file__).resolve()), "_train", *KILL_RUN, "--out", str(out)]
    env = {**os.environ, PHASE_FILE_ENV: str(phase_file), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return argv + (["--resume"] if resume else []), env


def phase_file_of(run: Path) -> Path:
    """Where the run in `run` announces its phases: beside it, so deleting the run keeps the announcements."""
    return run.parent / f"{run.name}.phases"


def run_training(out: Path, resume: bool = False) -> list[tuple[str, float]]:
    """Run the kill campaign's training to its end; the phases it announced, (name, monotonic time)."""
    phase_file = phase_file_of(out)
    argv, env = _train_command(out, phase_file, resume)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"training in {out} failed ({done.returncode}): {done.stderr[-2000:]}")
    return read_phases(phase_file)


def read_phases(path: Path) -> list[tuple[str, float]]:
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [(name, float(at)) for name, at in (line for line in lines if len(line) == 2)]


def phase_durations(phases: list[tuple[str, float]]) -> dict[str, list[float]]:
    """Each phase's occurrences' durations, in order, from a run's announcements."""
    started: dict[str, float] = {}
    durations: dict[str, list[float]] = {}
    for name, at in phases:
        if name.startswith("end-"):
            phase = name.removeprefix("end-")
            durations.setdefault(phase, []).append(at - started.pop(phase))
        else:
            started[name] = at
    return durations


def kill_during(out: Path, phase: str, occurrence: int, delay_s: float) -> str:
    """Start the run, SIGKILL it `delay_s` into the `occurrence`-th (0-based) start of `phase`; what it left."""
    phase_file = phase_file_of(out)
    argv, env = _train_command(out, phase_file, resume=False)
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while child.poll() is None:
            starts = [at for name, at in read_phases(phase_file) if name == phase]
            if len(starts) > occurrence:
                time.sleep(max(0.0, starts[occurrence] + delay_s - time.monotonic()))
                half_saved = sorted(p.name for p in (out / "checkpoints").glob(".*.tmp")) if phase == "checkpoint" else []
                child.send_signal(signal.SIGKILL)
                child.wait()
                return f"killed in {phase} #{occurrence + 1} at +{delay_s:.3f} s" + (
                    f", a half-written {half_saved[0]} left" if half_saved else "")
            time.sleep(0.005)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return f"the run ended before {phase} #{occurrence + 1}: not killed"


def compare_runs(reference: Path, resumed: Path) -> list[str]:
    """What differs between a finished uninterrupted run and a killed-then-resumed one ([] = nothing)."""
    import torch
    from safetensors.torch import load_file

    from agent_rl.io import read_jsonl, read_trajectories

    problems = []
    rows = [[{k: v for k, v in r.items() if not k.startswith("time/")} for r in read_jsonl(run / "metrics.jsonl")]
            for run in (reference, resumed)]
    iterations = [[r.get("iteration") for r in run_rows if "iteration" in r] for run_rows in rows]
    if iterations[1] != iterations[0]:
        problems.append(f"metrics iterations {iterations[1]} != {iterations[0]}")
    elif rows[1] != rows[0]:
        problems.append("metrics rows differ")
    final = [sorted((run / "checkpoints").glob("iter-*"))[-1:] for run in (reference, resumed)]
    if not all(final) or final[0][0].name != final[1][0].name:
        return problems + [f"final checkpoints {final}"]
    weights = [load_file(str(f[0] / "model" / "model.safetensors")) for f in final]
    if weights[0].keys() != weights[1].keys() or any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0]):
        problems.append("final weights differ")
    optimizers = [torch.load(f[0] / "optimizer.pt", weights_only=False)["state"] for f in final]
    if any(not torch.equal(optimizers[0][k]["exp_avg"], optimizers[1][k]["exp_avg"]) for k in optimizers[0]):
        problems.append("final optimizer state differs")
    for path in sorted((reference / "trajectories").glob("*.jsonl")):
        mine = resumed / "trajectories" / path.name
        expected = [(t.traj_id, [s.response for s in t.steps], t.outcome) for t in read_trajectories(path)]
        got = [(t.traj_id, [s.response for s in t.steps], t.outcome) for t in read_trajectories(mine)] \
            if mine.exists() else []
        if got != expected:
            problems.append(f"trajectories/{path.name}: {len(got)} recorded, {len(expected)} expected "
                            f"({len({g[0] for g in got})} distinct)" if len(got) != len(expected) else
                            f"trajectories/{path.name} differ")
    for table in sorted((reference / "eval").glob("*/table.csv")):
        mine = resumed / table.relative_to(reference)
        if not mine.exists() or mine.read_text() != table.read_text():
            problems.append(f"{table.relative_to(reference)} differs")
        episodes = [read_trajectories(p / "episodes.jsonl") for p in (table.parent, mine.parent)]
        if [t.traj_id for t in episodes[1]] != [t.traj_id for t in episodes[0]]:
            problems.append(f"{table.parent.name} eval episodes: {len(episodes[1])} recorded, {len(episodes[0])} expected")
    return problems


def kill_trials(out: Path, kills: int, seed: int, done: set[str]) -> Iterator[Trial]:
    """`kills` trials spread over the phases (rollout, update and checkpoint first), each against one reference."""
    reference = out / "reference"
    if not (reference / "report.done").exists():
        shutil.rmtree(reference, ignore_errors=True)
        run_training(reference)
        (reference / "report.done").write_text("")
    durations = phase_durations(read_phases(phase_file_of(reference)))
    rng = random.Random(seed)
    for k in range(kills):
        phase = PHASES[k % len(PHASES)] if kills >= len(PHASES) else PHASES[k % 3]
        name = f"kill-{k:02d}-{phase}"
        occurrence = rng.randrange(len(durations[phase]))
        delay = rng.uniform(0.0, durations[phase][occurrence])
        if name in done:
            continue
        start = time.monotonic()
        run = out / name
        shutil.rmtree(run, ignore_errors=True)
        phase_file_of(run).unlink(missing_ok=True)
        killed = kill_during(run, phase, occurrence, delay)
        try:
            run_training(run, resume=True)
            problems = compare_runs(reference, run)
        except RuntimeError as err:
            problems = [str(err).splitlines()[0]]
        detail = killed + ("; resumed run identical" if not problems else "; " + "; ".join(problems))
        yield trial("kill", name, not problems and "not killed" not in killed, detail, time.monotonic() - start)


# --- ray: kill and stop env workers while episodes are played -------------------------------------------------


def ray_trials(trials: int, seed: int, done: set[str]) -> Iterator[Trial]:
    import ray

    from agent_rl.eval import harness
    from agent_rl.eval.harness import EvalProtocol, evaluate
    from agent_rl.io import read_trajectories
    from agent_rl.registry import make
    from agent_rl.rollout.collector import Collector
    from agent_rl.rollout.envpool import EnvWorkers
    from agent_rl.rollout.memory import HistoryMemory

    make_env = functools.partial(make, "keydoor/corridor-v0", expert=True, segments=1)
    ray.init(num_cpus=3, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    rng = random.Random(seed)
    try:
        for k in range(trials):
            where = "eval" if k % 2 else "train"
            name = f"ray-{k:02d}-{where}"
            turns = sorted(rng.sample(range(1, 9), rng.randint(1, 3)))
            schedule = {turn: rng.choice((signal.SIGKILL, signal.SIGSTOP)) for turn in turns}
            if name in done:
                continue
            start = time.monotonic()
            workers = EnvWorkers(3, timeout_s=3.0, max_retries=3)
            made: list[Collector] = []  # the collector the run builds (the eval harness makes its own)
            recording_collector = functools.partial(_recorded, made, Collector)
            policy = SabotagingPolicy(made, schedule, random.Random(rng.random()))
            with _tmpdir() as tmp:
                if where == "train":
                    collector = recording_collector(make_env, policy, HistoryMemory(), max_turns=30, workers=workers)
                    try:
                        groups = collector.collect_groups([(t, 0) for t in range(6)], 4, prefix="it1")
                    finally:
                        collector.close()
                    trajectories = [t for g in groups for t in g.trajectories]
                    expected = [f"it1/g{g}/r{r}" for g in range(6) for r in range(4)]
                else:
                    protocol = EvalProtocol(env_id="keydoor/corridor-v0", split="test", policy="expert",
                                            seeds=(0, 1), episodes_per_seed=12, catalog_size=64, max_steps=30,
                                            success_definition="won", task_set="keydoor")
                    with mock.patch.object(harness, "Collector", recording_collector):
                        evaluate(make_env, policy, protocol, HistoryMemory(), tmp, 24, workers=workers)
                    trajectories = read_trajectories(tmp / "episodes.jsonl")
                    expected = [s.traj_id for s in harness.episode_specs(64, [0, 1], 12)]
            hits = policy.hits
            ids = [t.traj_id for t in trajectories]
            problems = []
            if ids != expected:
                problems.append(f"{len(ids)} episodes recorded, {len(expected)} expected")
            if len(set(ids)) != len(ids):
                problems.append(f"{len(ids)} episodes, {len(set(ids))} distinct")
            lost = [t.traj_id for t in trajectories if not t.success and "env_error" not in t.metadata]
            if lost:
                problems.append(f"{len(lost)} episodes neither won nor marked env_error")
            left = sorted({pid for _, pid in hits if _alive(pid)})
            if left:
                problems.append(f"workers left behind: {left}")
            errors = sum("env_error" in t.metadata for t in trajectories)
            detail = (", ".join(f"{s} pid {p}" for s, p in hits) or "no worker hit") + \
                f"; {len(ids)} episodes, {errors} env_error" + ("; " + "; ".join(problems) if problems else "")
            yield trial("ray", name, not problems and bool(hits), detail, time.monotonic() - start)
    finally:
        ray.shutdown()


def _recorded(made: list[Any], cls: type, *args: Any, **kwargs: Any) -> Any:
    made.append(cls(*args, **kwargs))
    return made[-1]


class SabotagingPolicy:
    """The expert, which at chosen turns of the run first sends a signal to a random live env worker."""

    def __init__(self, collectors: list[Any], schedule: dict[int, signal.Signals], rng: random.Random) -> None:
        from agent_rl.policy.baselines import ExpertPolicy

        self.expert, self.collectors, self.schedule, self.rng = ExpertPolicy(), collectors, schedule, rng
        self.turn = 0
        self.hits: list[tuple[str, int]] = []

    def act(self, requests: list[Any]) -> list[Any]:
        self.turn += 1
        sig = self.schedule.get(self.turn)
        pids = [pid for c in self.collectors for pid in getattr(c.pool, "pids", []) if _alive(pid)]
        if sig is not None and pids:
            pid = self.rng.choice(pids)
            os.kill(pid, sig)
            self.hits.append((signal.Signals(sig).name, pid))
        return self.expert.act(requests)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@contextlib.contextmanager
def _tmpdir() -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="agent_rl_faults_") as tmp:
        yield Path(tmp)


# --- env-fuzz ------------------------------------------------------------------------------------------------

# Each built-in family, with its step limit: its own timeout where it has one (code and shell envs), plus slack
ENV_FAMILIES: dict[str, tuple[dict[str, Any], float, float]] = {  # id: (kwargs, share of the actions, step limit s)
    "textworld/demo-v0": ({}, 0.16, 10.0),
    "alfworld/demo-v0": ({}, 0.16, 10.0),
    "webshop/generated-v0": ({}, 0.16, 10.0),
    "search/demo-v0": ({}, 0.16, 10.0),
    "keydoor/corridor-v0": ({}, 0.16, 10.0),
    "swegym/builtin-v0": ({"timeout_s": 5.0}, 0.1, 5.0 + 5.0),
    "appworld/generated-v0": ({"timeout_s": 5.0}, 0.1, 5.0 + 10.0),
}


def env_fuzz_trials(actions: int, seed: int, done: set[str]) -> Iterator[Trial]:
    from agent_rl.fuzz import fuzz_env
    from agent_rl.registry import make

    for env_id, (kwargs, share, limit) in ENV_FAMILIES.items():
        name = f"env-fuzz-{env_id}"
        if name in done:
            continue
        start = time.monotonic()
        report = fuzz_env(functools.partial(make, env_id, expert=True, **kwargs), max(1, round(actions * share)),
                          seed=seed, step_limit_s=limit, name=env_id)
        detail = (f"{report.actions} actions ({len(report.by_kind)} kinds), slowest step {report.slowest_step_s:.2f} s "
                  f"(limit {limit:g} s), expert wins after: {report.expert_won_after}")
        if report.problems:
            detail += f"; {len(report.problems)} problems, first: {report.problems[0]}"
        yield {**trial("env-fuzz", name, report.ok, detail, time.monotonic() - start), "actions": report.actions,
               "broken_actions": len(report.problems)}


# --- cli-fuzz ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadCall:
    argv: tuple[str, ...]
    names: str  # what the one error line must mention (the bad key, value, path or id)
    files: tuple[tuple[str, str], ...] = ()  # (name, content) written into the case's folder first; {dir} in argv


class Accepted(Exception):
    """The invocation got past validation: it would have trained or evaluated."""


def bad_calls() -> list[BadCall]:
    """Several hundred invocations a user gets wrong, each with the token its error must name."""
    from agent_rl.config import TrainConfig

    calls: list[BadCall] = []
    for key, value in _numeric_fields(TrainConfig()):
        calls.append(BadCall(("train", f"{key}=abc"), key))
        calls.append(BadCall(("train", f"{key}=[1, 2]"), key))
    for key, bound in _bounded_fields():
        for bad in ("-1", "0") if bound == "> 0" else ("-1", "-0.5"):
            calls.append(BadCall(("train", f"{key}={bad}"), key))
    for key, _ in _numeric_fields(TrainConfig()):
        section, _, leaf = key.rpartition(".")
        typo = f"{section}.{leaf[:-1]}" if section else leaf[:-1]
        calls.append(BadCall(("train", f"{typo}=1"), typo))
    for section in ("env", "model", "rollout", "algo", "optim", "ppo", "sft", "eval", "policy", "train", "log"):
        calls.append(BadCall(("train", f"{section}.no_such_key=1"), "no_such_key"))
    for key, value in (("env.protocol", "json"), ("policy.backend", "torch"), ("sft.backend", "hf"),
                       ("train.mixed_precision", "fp8"), ("policy.vllm.placement", "remote")):
        calls.append(BadCall(("train", f"{key}={value}"), key))
    for env_id in ("textworld/demo-v9", "nosuch/env-v0", "textworld", "keydoor/corridor", "TEXTWORLD/DEMO-V0", "../x"):
        calls += [BadCall(("train", "--env", env_id), env_id), BadCall(("eval", "--env", env_id, "--policy", "expert"), env_id),
                  BadCall(("envs", env_id), env_id)]
    for algo in ("grpoo", "GiGPO2", "ppo2", "none", "hgp0"):
        calls += [BadCall(("train", "--algo", algo), algo), BadCall(("algos", algo), algo)]
    calls += [
        BadCall(("train", "--config", "/no/such/config.yaml"), "/no/such/config.yaml"),
        BadCall(("train", "--config", "{dir}"), "{dir}"),
        BadCall(("train", "model.path=/no/such/model"), "/no/such/model"),
        BadCall(("train", "--model", "./missing-model"), "missing-model"),
        BadCall(("eval", "--env", "keydoor/corridor-v0", "--policy", "/no/such/model"), "/no/such/model"),
        BadCall(("eval", "--env", "keydoor/corridor-v0", "--policy", "http:localhost"), "http:localhost"),
        BadCall(("view", "/no/such/run"), "/no/such/run"),
        BadCall(("view", "{dir}"), "{dir}"),
        BadCall(("models", "fetch", "gpt-5"), "gpt-5"),
        BadCall(("models", "fetch", "smollm2-135m", "--source", "/no/such.gguf"), "/no/such.gguf"),
        BadCall(("eval", "--env", "textworld/games-v0", "--policy", "expert", "--env-arg", "path=/no/such/games"),
                "/no/such/games"),
        BadCall(("eval", "--env", "keydoor/corridor-v0", "--policy", "expert", "--env-arg", "segments"), "segments"),
        BadCall(("eval", "--env", "keydoor/corridor-v0", "--policy", "expert", "--env-arg", "segments=-2"), "segments"),
        BadCall(("eval", "--env", "keydoor/corridor-v0", "--policy", "expert", "--env-arg", "no_such_arg=1"),
                "no_such_arg"),
        BadCall(("eval", "--env", "keydoor/corridor-v0", "--policy", "expert", "--split", "validation"), "validation"),
        BadCall(("train", "env.kwargs.segments=-1", "--env", "keydoor/corridor-v0"), "segments"),
        BadCall(("train", "env.kwargs.no_such_arg=1", "--env", "keydoor/corridor-v0"), "no_such_arg"),
        BadCall(("train", "algo.params.no_such_param=1", "--algo", "gigpo"), "no_such_param"),
        BadCall(("train", "algo.params.gamma=-3", "--algo", "gigpo"), "gamma"),
    ]
    for flag, values in (("-n", ("0", "-3", "many")), ("--max-turns", ("0", "-1", "x")), ("--history", ("-1", "y")),
                         ("--temperature", ("-0.5", "hot")), ("--max-new-tokens", ("0", "-8")),
                         ("--batch-size", ("0", "-1")), ("--num-threads", ("-2",)), ("--env-workers", ("-1",)),
                         ("--seeds", ("a",)), ("--protocol", ("json",))):
        for value in values:
            calls.append(BadCall(("eval", "--env", "keydoor/corridor-v0", "--policy", "expert", flag, value), flag))
    calls += [BadCall(("view", "{dir}", "--port", port), "--port") for port in ("-1", "70000", "http")]
    calls += [BadCall(("envs", "keydoor/corridor-v0", "--fuzz", n), "--fuzz") for n in ("0", "-5", "lots")]
    calls.append(BadCall(("envs", "--fuzz", "10"), "--fuzz"))
    for override in ("rollout.group_size", "=4", "rollout..group_size=2", ".x=1", "rollout.group_size==2"):
        calls.append(BadCall(("train", override), override.strip("=").split("=")[0] or "="))
    for name in ("", "1abc", "my-tools", "../escape", "class", "Upper"):
        calls.append(BadCall(("init", name, "--dir", "{dir}"), repr(name)[1:-1] or "name"))
    calls += [BadCall(argv, token) for argv, token in (
        ((), "command"), (("fly",), "fly"), (("train", "--no-such-flag"), "--no-such-flag"),
        (("eval",), "--policy"), (("models",), "models_command"), (("algos", "--bogus"), "--bogus"))]
    for name, text in _bad_yaml().items():  # the error names the file, or the key for a value out of range
        token = "rollout.group_size" if name == "negative.yaml" else name
        calls.append(BadCall(("train", "--config", f"{{dir}}/{name}"), token, ((name, text),)))
    return calls


def _numeric_fields(config: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, default) of every int/float setting of the config tree."""
    import dataclasses

    fields = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            fields += _numeric_fields(value, f"{key}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            fields.append((key, value))
    return fields


def _bounded_fields() -> list[tuple[str, str]]:
    """The settings `agent_rl.config` bounds, found by trying each numeric one at -1 (what must be refused)."""
    from agent_rl.config import ConfigError, TrainConfig, load_config

    bounded = []
    for key, _ in _numeric_fields(TrainConfig()):
        try:
            load_config(overrides=[f"{key}=0"])
            bound = ">= 0"
        except ConfigError:
            bound = "> 0"
        try:
            load_config(overrides=[f"{key}=-1"])
        except ConfigError:
            bounded.append((key, bound))
    return bounded


def _bad_yaml() -> dict[str, str]:
    return {
        "tabs.yaml": "env:\n\tid: textworld/demo-v0\n", "unclosed.yaml": "env: {id: textworld/demo-v0\n",
        "list.yaml": "- env\n- model\n", "scalar.yaml": "42\n", "duplicate.yaml": "iterations: 2\niterations: 3\n",
        "unknown_top.yaml": "epochs: 3\n", "wrong_type.yaml": "rollout:\n  group_size: eight\n",
        "negative.yaml": "rollout:\n  group_size: -8\n", "section_scalar.yaml": "env: textworld\n",
        "binary.yaml": "\x00\x01\x02", "bad_indent.yaml": "env:\n  id: a\n max_turns: 3\n",
        "unknown_nested.yaml": "ppo:\n  clip: 0.2\n", "empty_key.yaml": ": 3\n",
        "anchor.yaml": "a: *missing\n", "utf16.yaml": "\ufeffenv:\n  id: \udc80\n",
    }


def run_cli(argv: list[str]) -> tuple[int, str]:
    """`agent-rl ARGV` in this process with training and evaluation stubbed to raise `Accepted`: (code, stderr)."""
    from agent_rl import cli
    from agent_rl.eval import runner
    from agent_rl.train import pipeline

    stderr = io.StringIO()
    try:
        with (mock.patch.object(pipeline.TrainingRun, "run", side_effect=Accepted),
              mock.patch.object(runner, "evaluate", side_effect=Accepted),
              contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO())):
            code = cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except Accepted:
        code = 0
    except Exception:  # noqa: BLE001 - a traceback is exactly what this campaign looks for
        import traceback

        stderr.write(traceback.format_exc())
        code = 1
    return code, stderr.getvalue()


def cli_fuzz_trials(done: set[str], limit: int | None = None) -> Iterator[Trial]:
    import logging

    logging.disable(logging.WARNING)  # libraries' warnings are not the error line under test
    calls = bad_calls()[:limit]
    for k, call in enumerate(calls):
        name = f"cli-{k:03d}"
        if name in done:
            continue
        with _tmpdir() as tmp:
            for file_name, text in call.files:
                (tmp / file_name).write_text(text, errors="surrogateescape")
            argv = [a.replace("{dir}", str(tmp)) for a in call.argv]
            start = time.monotonic()
            code, err = run_cli(argv)
            token = call.names.replace("{dir}", str(tmp))
        lines = [line for line in err.strip().splitlines() if line.strip()]
        error_lines = [line for line in lines if "error:" in line]
        if code == 0:
            verdict = "accepted"
        elif "Traceback" in err:
            verdict = f"traceback: {lines[-1] if lines else ''}"
        elif len(error_lines) != 1:
            verdict = f"{len(error_lines)} error lines"
        elif token.lower() not in error_lines[0].lower():
            verdict = f"error does not name {token!r}"
        else:
            verdict = ""
        shown = " ".join(argv)[:120]
        detail = f"agent-rl {shown} -> " + (verdict or error_lines[0][:200])
        yield trial("cli-fuzz", name, not verdict, detail, time.monotonic() - start)


# --- the campaign --------------------------------------------------------------------------------------------


def load_sibling(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_campaigns(out: Path, work: Path, campaigns: list[str], quick: bool, seed: int, kills: int, ray_runs: int,
                  fuzz_actions: int) -> list[Trial]:
    """Run (or resume) the campaigns into `out` (the kill trials' runs under `work`); every trial of
    `out/trials.jsonl`, finished and earlier ones."""
    from agent_rl.io import append_jsonl, read_jsonl

    out.mkdir(parents=True, exist_ok=True)
    log = out / "trials.jsonl"
    done = {t["trial"] for t in read_jsonl(log)} if log.exists() else set()
    sources: dict[str, Callable[[], Iterator[Trial]]] = {
        "kill": lambda: kill_trials(work / "kill", kills, seed, done),
        "ray": lambda: ray_trials(ray_runs, seed, done),
        "env-fuzz": lambda: env_fuzz_trials(fuzz_actions, seed, done),
        "cli-fuzz": lambda: cli_fuzz_trials(done, 40 if quick else None),
        "sandbox": lambda: iter(t for t in load_sibling("faults_sandbox").sandbox_trials(quick=quick)
                                if t["trial"] not in done),
    }
    for campaign in campaigns:
        started = time.monotonic()
        for result in sources[campaign]():
            append_jsonl(log, [result])
            mark = "held " if result["held"] else "BROKE"
            print(f"{mark} {result['trial']}: {result['detail']}", flush=True)
        print(f"{campaign}: {time.monotonic() - started:.0f} s", flush=True)
    return read_jsonl(log)


def summarise(trials: list[Trial]) -> list[dict[str, Any]]:
    rows = []
    for campaign in CAMPAIGNS:
        mine = [t for t in trials if t["campaign"] == campaign]
        if not mine:
            continue
        if campaign == "env-fuzz":  # a trial is one action here, as the issue counts them
            count = sum(t["actions"] for t in mine)
            broke = sum(t["broken_actions"] + (0 if t["held"] or t["broken_actions"] else 1) for t in mine)
        else:
            count, broke = len(mine), sum(not t["held"] for t in mine)
        rows.append({"campaign": campaign, "trials": count, "held": count - broke, "broke": broke,
                     "seconds": round(sum(t["seconds"] for t in mine))})
    return rows


def write_table(out: Path, rows: list[dict[str, Any]]) -> None:
    from agent_rl.io import atomic_write

    with atomic_write(out / "table.csv") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| campaign | trials | held | broke | wall-clock (s) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['campaign']} | {r['trials']} | {r['held']} | {r['broke']} | {r['seconds']} |" for r in rows]
    with atomic_write(out / "table.md") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_train"]:
        return train_child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--campaigns", nargs="+", choices=CAMPAIGNS, default=list(CAMPAIGNS))
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "faults")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "faults",
                        help="where the kill campaign's training runs go (hundreds of MB; default runs/faults)")
    parser.add_argument("--quick", action="store_true", help="CI size: 5 kills, 2 Ray runs, 700 actions, 40 CLI calls")
    parser.add_argument("--kills", type=int, help="kill trials (default 25; --quick 5)")
    parser.add_argument("--ray-runs", type=int, help="Ray trials (default 20; --quick 2)")
    parser.add_argument("--fuzz-actions", type=int, help="env-fuzz actions in all (default 10,000; --quick 700)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    trials = run_campaigns(args.out, args.work, args.campaigns, args.quick, args.seed,
                           args.kills or (5 if args.quick else 25), args.ray_runs or (2 if args.quick else 20),
                           args.fuzz_actions or (700 if args.quick else 10_000))
    rows = summarise(trials)
    write_table(args.out, rows)
    print((args.out / "table.md").read_text())
    return 0 if all(r["broke"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
