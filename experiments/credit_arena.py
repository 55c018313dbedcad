"""Credit arena: every credit-assignment method from one SFT start, the same env-step budget, many seeds.

    python experiments/credit_arena.py --out runs/arena                                  # all methods, seeds 0-4
    python experiments/credit_arena.py --out runs/arena --methods grpo gigpo --budget 4800 --checkpoints 6 --workers 2
    python experiments/credit_arena.py --out runs/arena --report-only                    # tables + plots only
    python experiments/credit_arena.py --quick --out /tmp/arena                          # the CI smoke run

Protocol (stated again in the table it writes):
1. one start for every method and seed: the tiny model built here and SFT-warm-started on the suite's
   expert episodes (`--config`, default configs/keydoor_arena.yaml), evaluated once on the held-out split;
2. per method and seed, RL from that start with the method's preset (configs/algos/<name>.yaml), the
   rest of the config shared, until the run has spent each budget checkpoint's number of agent-env
   steps (turns), not a number of iterations: ARPO's branches and long failing episodes cost turns;
3. at each checkpoint, held-out success (greedy, every held-out task once), written atomically to
   `<out>/<method>/seed-<s>/results/budget-<steps>.json` with the credit diagnostics of the
   iterations since the previous checkpoint (agent_rl/credit/diagnostics.py); a run resumes from its
   last RL checkpoint and skips what it already wrote;
4. the report: mean held-out success over seeds with a 95 % bootstrap CI, and the paired difference
   against GRPO (same seeds) with its 95 % bootstrap CI (agent_rl/eval/stats.py).
Writes `table.md`, `table.csv` (one row per method x seed x checkpoint), `learning_curves.png` and
`diagnostics.png` under `--report` (default experiments/results/credit_arena; `--quick`: under --out).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from agent_rl.config import TrainConfig, load_config
from agent_rl.credit import available_credit
from agent_rl.credit.diagnostics import DIAGNOSTICS
from agent_rl.eval.plots import plot_band_curves
from agent_rl.eval.stats import Interval, bootstrap_ci, paired_difference
from agent_rl.io import atomic_write, read_jsonl, write_json
from agent_rl.train.checkpoint import list_checkpoints
from agent_rl.train.metrics import MetricsLog
from agent_rl.train.pipeline import TrainingRun, seed_everything
from agent_rl.train.start import prepare_start
from agent_rl.train.trainer import RLTrainer

REPO = Path(__file__).resolve().parents[1]
ARENA_CONFIG = REPO / "configs" / "keydoor_arena.yaml"
BASELINE = "grpo"
# --quick: two methods, one seed, a few dozen turns of a 2-layer model; for CI, not for conclusions
QUICK_SET = ["sft.tasks=4", "sft.epochs=1", "rollout.tasks_per_iteration=2", "rollout.group_size=2",
             "env.kwargs.segments=1", "env.max_turns=10", "eval.episodes=2", "ppo.mini_batch_rows=8",
             "ppo.micro_batch_rows=8"]
PLOTTED = ("zero_advantage_fraction", "cross_trajectory_state_fraction", "step_variance_share", "effective_groups")


@dataclass(frozen=True)
class Job:
    """One method x seed run: trains until each budget is spent and evaluates there."""

    method: str
    seed: int
    budgets: tuple[int, ...]
    config: Path
    overrides: tuple[str, ...]
    sft_path: Path
    out: Path

    @property
    def run_dir(self) -> Path:
        return self.out / self.method / f"seed-{self.seed}"

    def result_path(self, budget: int) -> Path:
        return self.run_dir / "results" / f"budget-{budget:07d}.json"


def budget_checkpoints(budget: int, checkpoints: int) -> tuple[int, ...]:
    """`checkpoints` evenly spaced env-step budgets ending at `budget`."""
    if budget < 1 or checkpoints < 1:
        raise ValueError(f"--budget and --checkpoints must be positive, got {budget} and {checkpoints}")
    return tuple(sorted({round(budget * k / checkpoints) for k in range(1, checkpoints + 1)}))


def interval_summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Means of the diagnostics and training success over the iterations `rows` (NaN when none)."""
    names = [*DIAGNOSTICS, "success_rate"]
    out = {}
    for name in names:
        values = [r[f"train/{name}"] for r in rows if not math.isnan(r.get(f"train/{name}", math.nan))]
        out[f"train_{name}" if name == "success_rate" else name] = statistics.fmean(values) if values else math.nan
    return out


def run_job(job: Job) -> str:
    """Train `job` through its budgets (resuming), writing one result file per budget; returns a log line."""
    import torch

    torch.set_num_threads(1)
    if all(job.result_path(b).exists() for b in job.budgets):
        return f"{job.method} seed {job.seed}: done before"
    config = load_config(job.config, [
        *job.overrides, f"algo.name={job.method}", f"seed={job.seed}", f"model.path={job.sft_path}",
        "sft.enabled=false", "eval.before=false", "eval.every=0", f"out_dir={job.run_dir}",
    ])
    run = TrainingRun(config, log=lambda _: None)
    job.run_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = list_checkpoints(job.run_dir / "checkpoints")
    resumed = int(checkpoints[-1].name.split("-")[1]) if checkpoints else 0
    metrics = MetricsLog(job.run_dir, resume_from_iteration=resumed)
    seed_everything(config.seed)  # a resumed run then restores the checkpoint's RNG states
    model, tokenizer = run.load(checkpoints[-1] / "model" if checkpoints else job.sft_path)
    ref_model = run.load(job.sft_path)[0].eval().requires_grad_(False) if config.ppo.kl_coef > 0 else None
    trainer = RLTrainer(config, model, tokenizer, run.train_env, run.train_tasks.size, job.run_dir, ref_model)
    trainer.resume()
    history = [r for r in read_jsonl(metrics.path) if "train/turns" in r] if metrics.path.exists() else []
    turns = sum(int(r["train/turns"]) for r in history)
    done_at = 0  # turns when the previous checkpoint was reached: its diagnostics cover the iterations since
    for budget in job.budgets:
        while turns < budget:
            row = trainer.step()
            metrics.log(trainer.iteration, row)
            trainer.save()
            history.append(row)
            turns += int(row["train/turns"])
        if not job.result_path(budget).exists() and history and turns - int(history[-1]["train/turns"]) >= budget:
            # the run resumed past this budget without a result there: evaluating now would mislabel the model
            raise ValueError(f"{job.run_dir} has trained {turns} env steps but has no result at {budget}: the budget "
                             "checkpoints changed since it ran; rerun with its --budget/--checkpoints or a new --out")
        if job.result_path(budget).exists():
            done_at = json.loads(job.result_path(budget).read_text())["turns"]
            continue
        clock = time.perf_counter()
        table = run.evaluate(model, tokenizer, f"budget-{budget:07d}", f"{job.method}, {turns} env steps")
        spent = [r for r, cumulative in zip(history, cumulative_turns(history)) if done_at < cumulative]
        write_json(job.result_path(budget), {
            "method": job.method, "seed": job.seed, "budget": budget, "turns": turns,
            "iterations": len(history), "success": table[-1].success_mean,
            "train_seconds": sum(r["time/iteration"] for r in history),
            "eval_seconds": time.perf_counter() - clock, **interval_summary(spent),
        })
        done_at = turns
    trainer.collector.close()
    metrics.close()
    return f"{job.method} seed {job.seed}: {turns} turns, {len(history)} iterations"


def cumulative_turns(history: list[dict[str, Any]]) -> list[int]:
    total, out = 0, []
    for row in history:
        total += int(row["train/turns"])
        out.append(total)
    return out


def load_results(out: Path, methods: list[str], seeds: list[int], start_success: float) -> list[dict[str, Any]]:
    """Every written result of `methods` x `seeds`, plus a budget-0 row per run: the shared start."""
    results = []
    for method in methods:
        for seed in seeds:
            files = sorted((out / method / f"seed-{seed}" / "results").glob("budget-*.json"))
            if files:
                results.append({"method": method, "seed": seed, "budget": 0, "turns": 0, "iterations": 0,
                                "success": start_success})
                results.extend(json.loads(f.read_text()) for f in files)
    return results


@dataclass
class Summary:
    """One method at one budget: success over seeds, the paired difference to GRPO, costs, diagnostics."""

    method: str
    budget: int
    success: Interval
    vs_baseline: Interval | None
    seconds_per_kstep: float
    diagnostics: dict[str, float]


def summarise(results: list[dict[str, Any]]) -> list[Summary]:
    """Per method and budget: bootstrap CIs over seeds and the paired comparison with GRPO."""
    by_key: dict[tuple[str, int], dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in results:
        by_key[(r["method"], r["budget"])][r["seed"]] = r
    summaries = []
    for (method, budget), runs in sorted(by_key.items()):
        success = {seed: r["success"] for seed, r in runs.items()}
        baseline = by_key.get((BASELINE, budget))
        versus = None
        if method != BASELINE and baseline:
            versus = paired_difference(success, {seed: r["success"] for seed, r in baseline.items()})
        costs = [r["train_seconds"] / r["turns"] * 1000 for r in runs.values() if r.get("turns")]
        diagnostics = {}
        for name in DIAGNOSTICS:
            values = [r[name] for r in runs.values() if name in r and not math.isnan(r[name])]
            diagnostics[name] = statistics.fmean(values) if values else math.nan
        summaries.append(Summary(method, budget, bootstrap_ci(list(success.values())), versus,
                                 statistics.fmean(costs) if costs else math.nan, diagnostics))
    return summaries


def percent(interval: Interval | None, signed: bool = False) -> str:
    if interval is None:
        return "–"
    sign = "+" if signed else ""
    return f"{100 * interval.mean:{sign}.1f} [{100 * interval.low:{sign}.1f}, {100 * interval.high:{sign}.1f}]"


def write_csv(path: Path, results: list[dict[str, Any]]) -> None:
    columns = ["method", "seed", "budget", "turns", "iterations", "success", "train_success_rate", *DIAGNOSTICS,
               "train_seconds", "eval_seconds"]
    with atomic_write(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", restval="")
        writer.writeheader()
        for r in sorted(results, key=lambda r: (r["method"], r["seed"], r["budget"])):
            writer.writerow(r)


def protocol_lines(config: TrainConfig, args: argparse.Namespace, start_success: float, seeds: list[int]) -> list[str]:
    tiny = config.model.tiny
    return [
        (f"suite: env `{config.env.id}` {dict(config.env.kwargs) or ''}, train split `{config.env.train_split}`, "
        f"held-out split `{config.env.eval_split}` ({config.eval.episodes or 'every'} task(s), each once, greedy, "
        f"seed {config.eval.seeds[0]}), {config.env.max_turns} turns an episode, history {config.env.history_window}"),
        (f"model: the tiny model (Llama, {tiny.num_layers} layers x {tiny.hidden_size}, random init, BPE trained here), "
        f"SFT on {config.sft.tasks} training tasks' expert episodes ({config.sft.epochs} epochs): the shared start, "
        f"held-out success {100 * start_success:.1f} %"),
        (f"RL: {config.rollout.tasks_per_iteration} tasks x {config.rollout.group_size} rollouts an iteration, "
        f"temperature {config.rollout.temperature}, AdamW lr {config.optim.lr}, PPO clip {config.ppo.clip_low}/"
        f"{config.ppo.clip_high}, each method with its preset (configs/algos); budget checkpoints "
        f"{', '.join(map(str, args.budgets))} agent-env steps (a run stops at the first iteration past each)"),
        f"seeds: {' '.join(map(str, seeds))} (the RL run's seed; the start is shared)",
        ("success: the env reports won=True within the turn limit; mean over seeds [95 % percentile bootstrap CI, "
        "exact over all resamples for <= 6 seeds]; Δ vs GRPO: mean over shared seeds of (method − GRPO) [its CI]"),
        ("diagnostics: means over the iterations of the last budget interval and over seeds "
        "(definitions in agent_rl/credit/diagnostics.py)"),
        "s / 1k steps: RL wall-clock (collect, credit, update) per 1,000 env steps, on this machine's shared cores",
    ]


def write_report(report: Path, results: list[dict[str, Any]], protocol: list[str]) -> list[Summary]:
    summaries = summarise(results)
    # each method at its longest budget that all its seeds reached: an arena extended for some methods (or
    # cut short in the middle of an extension) keeps every method's row
    seeds = {s.method: max(t.success.n for t in summaries if t.method == s.method) for s in summaries}
    final = {s.method: s.budget for s in sorted(summaries, key=lambda s: s.budget) if s.success.n == seeds[s.method]}
    header = ["method", "held-out success %", "Δ vs GRPO (points)", "seeds", "env steps", "s / 1k steps", "zero A",
              "step group size", "cross-traj. states", "step var. share", "equal-outcome groups", "effective groups"]
    last = sorted((s for s in summaries if s.budget == final[s.method]), key=lambda s: (-s.budget, -s.success.mean))
    lines = ["# Credit arena", "", "Protocol:", *[f"- {p}" for p in protocol], "",
             "## At each method's final budget", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in last:
        d = s.diagnostics
        lines.append("| " + " | ".join([
            s.method, percent(s.success), percent(s.vs_baseline, signed=True), str(s.success.n), str(s.budget),
            f"{s.seconds_per_kstep:.0f}", f"{d['zero_advantage_fraction']:.2f}", f"{d['step_group_size']:.2f}",
            f"{d['cross_trajectory_state_fraction']:.2f}", f"{d['step_variance_share']:.2f}",
            f"{d['equal_outcome_group_fraction']:.2f}", f"{d['effective_groups']:.1f}"]) + " |")
    budgets = sorted({s.budget for s in summaries})
    lines += ["", "## Every checkpoint: held-out success % [95 % CI]; Δ vs GRPO", "",
              "| method | " + " | ".join(f"{b} steps" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    cells = {(s.method, s.budget): s for s in summaries}
    for method in sorted({s.method for s in summaries}):
        row = []
        for b in budgets:
            s = cells.get((method, b))
            row.append("" if s is None else percent(s.success) + (
                f"; Δ {percent(s.vs_baseline, signed=True)}" if s.vs_baseline is not None and b else ""))
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    report.mkdir(parents=True, exist_ok=True)
    with atomic_write(report / "table.md") as handle:
        handle.write("\n".join(lines) + "\n")
    write_csv(report / "table.csv", results)
    plot_curves(report, summaries)
    return summaries


def plot_curves(report: Path, summaries: list[Summary]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = sorted({s.method for s in summaries})
    series = {m: sorted((s for s in summaries if s.method == m), key=lambda s: s.budget) for m in methods}
    plot_band_curves(
        {m: ([s.budget for s in ss], [100 * s.success.mean for s in ss], [100 * s.success.low for s in ss],
             [100 * s.success.high for s in ss]) for m, ss in series.items()},
        report / "learning_curves.png", "Held-out success, mean and 95 % bootstrap CI over seeds",
        "agent-env steps spent in RL", "success (%)")
    fig = Figure(figsize=(9.6, 6.4), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, name in zip(fig.subplots(2, 2).flat, PLOTTED):
        for m, ss in series.items():
            points = [(s.budget, s.diagnostics[name]) for s in ss if s.budget and not math.isnan(s.diagnostics[name])]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=m)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("agent-env steps")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize="small")
    with atomic_write(report / "diagnostics.png", "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/credit_arena"), help="runs and the shared start")
    parser.add_argument("--report", type=Path, help="where tables and plots go (default "
                        "experiments/results/credit_arena; with --quick: <out>/report)")
    parser.add_argument("--config", type=Path, default=ARENA_CONFIG)
    parser.add_argument("--methods", nargs="+", help="default: every registered method (--quick: grpo gigpo)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 3 4 (--quick: 0)")
    parser.add_argument("--budget", type=int, help="agent-env steps per run (default 2400, the committed table's; --quick: 16)")
    parser.add_argument("--checkpoints", type=int, help="evaluations along the budget (default 3; --quick: 1)")
    parser.add_argument("--workers", type=int, default=1, help="runs in parallel, one process and one thread each")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides for every run, key.sub=value")
    parser.add_argument("--quick", action="store_true", help="a smoke run for CI: tiny budget and model")
    parser.add_argument("--report-only", action="store_true", help="only aggregate the results written so far")
    args = parser.parse_args(argv)
    quick = args.quick
    args.methods = args.methods or (["grpo", "gigpo"] if quick else [name for name, _ in available_credit()])
    known = {name for name, _ in available_credit()}
    unknown = sorted(set(args.methods) - known)
    if unknown:
        parser.error(f"unknown method(s) {unknown}; registered: {sorted(known)}")
    args.seeds = args.seeds or ([0] if quick else [0, 1, 2, 3, 4])
    args.budgets = budget_checkpoints(args.budget or (16 if quick else 2400), args.checkpoints or (1 if quick else 3))
    args.report = args.report or (args.out / "report" if quick else REPO / "experiments" / "results" / "credit_arena")
    args.set = [*(QUICK_SET if quick else []), *args.set]
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def main(argv: list[str] | None = None) -> list[Summary]:
    args = parse_args(argv)
    base = load_config(args.config, [*args.set, f"out_dir={args.out / 'start'}"])
    sft_path, start_success = prepare_start(base, args.out / "start")
    jobs = [Job(m, s, args.budgets, args.config, tuple(args.set), sft_path, args.out)
            for s in args.seeds for m in args.methods]  # seed-major: a partial arena still compares every method
    if not args.report_only:
        clock = time.perf_counter()
        if args.workers == 1:
            for job in jobs:
                print(run_job(job), flush=True)
        else:
            os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the spawned workers
            with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
                for line in pool.map(run_job, jobs):
                    print(line, flush=True)
        print(f"arena: {time.perf_counter() - clock:.0f} s wall-clock with {args.workers} worker(s)")
    results = load_results(args.out, args.methods, args.seeds, start_success)
    summaries = write_report(args.report, results, protocol_lines(base, args, start_success, args.seeds))
    print((args.report / "table.md").read_text())
    return summaries


if __name__ == "__main__":
    main()
