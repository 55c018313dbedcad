"""Head to head: every credit-assignment method trained from the same start, same budget, several seeds.

    python experiments/compare_credit.py --out runs/compare                  # all registered methods
    python experiments/compare_credit.py --out runs/compare --methods grpo gigpo --seeds 0 1 2
    python experiments/compare_credit.py --out runs/compare --report-only    # table + plots from what ran

Protocol (stated again in the table it writes):
1. one start for everyone: the tiny model built on this machine and SFT-warm-started on expert episodes,
   exactly as the CPU demo does (`--config`, default configs/demo.yaml), evaluated once on the held-out split;
2. per method and seed, `--iterations` RL iterations from that start with the method's preset
   (configs/algos/<name>.yaml) under the same config: same tasks per iteration, group size, turn limit,
   PPO settings and learning rate; the seed changes the RL run (task order, sampling), not the start;
3. held-out success (greedy, every test task once) every `--eval-every` iterations and at the end.
Every run lives in `<out>/<method>/seed-<s>` and resumes where it stopped; finished runs are skipped.
Writes `<out>/table.md`, `<out>/table.csv`, `<out>/learning_curves.png` and `<out>/curves/<method>.png`.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from agent_rl.config import TrainConfig, load_config
from agent_rl.credit import available_credit
from agent_rl.eval.plots import plot_mean_curves
from agent_rl.io import atomic_write, read_jsonl
from agent_rl.train.pipeline import TrainingRun
from agent_rl.train.start import overall_success, prepare_start

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def run_method(args: argparse.Namespace, method: str, seed: int, sft_path: Path) -> Path:
    out = args.out / method / f"seed-{seed}"
    if overall_success(out / "eval" / "after_rl") is None:
        config = load_config(args.config, [
            *args.set, f"algo.name={method}", f"seed={seed}", f"model.path={sft_path}", "sft.enabled=false",
            "eval.before=false", f"iterations={args.iterations}", f"eval.every={args.eval_every}",
            f"out_dir={out}",
        ])
        clock = time.perf_counter()
        TrainingRun(config, log=lambda _: None).run()
        print(f"{method} seed {seed}: {time.perf_counter() - clock:.0f} s")
    return out


@dataclass
class MethodResult:
    method: str
    finals: list[float]  # held-out success per seed, after the last iteration
    curve: dict[int, list[float]]  # iteration -> held-out success per seed
    turns: list[int]  # agent-env turns spent per seed
    seconds_per_iteration: float


def collect_result(args: argparse.Namespace, method: str, start_success: float) -> MethodResult | None:
    finals, turns, seconds = [], [], []
    curve: dict[int, list[float]] = {0: []}
    for seed in args.seeds:
        run = args.out / method / f"seed-{seed}"
        final = overall_success(run / "eval" / "after_rl")
        if final is None:
            continue
        finals.append(final)
        curve[0].append(start_success)
        rows = [row for row in read_jsonl(run / "metrics.jsonl") if "iteration" in row and "train/turns" in row]
        turns.append(int(sum(row["train/turns"] for row in rows)))
        seconds.extend(row["time/iteration"] for row in rows)
        for row in rows:
            if "val/success_rate" in row:
                curve.setdefault(int(row["iteration"]), []).append(float(row["val/success_rate"]))
    if not finals:
        return None
    return MethodResult(method, finals, curve, turns, statistics.fmean(seconds) if seconds else float("nan"))


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def write_report(args: argparse.Namespace, config: TrainConfig, start_success: float,
                 results: list[MethodResult]) -> None:
    protocol = [
        (f"env `{config.env.id}`: train split `{config.env.train_split}`, held-out split `{config.env.eval_split}` "
        "(every task once, greedy decoding, seed 0)"),
        (f"model: the tiny model (Llama, {config.model.tiny.num_layers} layers x {config.model.tiny.hidden_size}, "
        f"random init, BPE trained here), SFT on {config.sft.tasks} training tasks' expert episodes "
        f"({config.sft.epochs} epochs): the shared start, held-out success {100 * start_success:.1f} %"),
        (f"RL: {args.iterations} iterations x {config.rollout.tasks_per_iteration} tasks x "
        f"{config.rollout.group_size} rollouts, {config.env.max_turns} turns per episode, history "
        f"{config.env.history_window}, temperature {config.rollout.temperature}, AdamW lr {config.optim.lr}, "
        f"PPO clip {config.ppo.clip_low}/{config.ppo.clip_high}, each method with its preset (configs/algos)"),
        f"seeds: {' '.join(map(str, args.seeds))} (the RL run's seed; the start is shared)",
        "success: the env reports won=True within the turn limit; mean ± std over seeds, in %",
        "turns: agent-env turns spent in RL, mean over seeds (equal budgets give equal turns up to episode length)",
        ("s / iteration: wall-clock of the RL iterations, mean; runs shared the CPU with a varying number of "
        "others, so it orders methods by cost only roughly"),
    ]
    header = ["method", "held-out success", "Δ vs start", "seeds", "RL turns", "s / iteration"]
    lines = []
    for r in sorted(results, key=lambda r: -statistics.fmean(r.finals)):
        mean, std = mean_std(r.finals)
        lines.append([r.method, f"{100 * mean:.1f} ± {100 * std:.1f}", f"{100 * (mean - start_success):+.1f}",
                      str(len(r.finals)), f"{statistics.fmean(r.turns):.0f}", f"{r.seconds_per_iteration:.1f}"])
    markdown = "\n".join(
        ["# Credit-assignment methods head to head", "", "Protocol:", *[f"- {p}" for p in protocol], "",
         "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
         *["| " + " | ".join(line) + " |" for line in lines], ""]
    )
    with atomic_write(args.out / "table.md") as handle:
        handle.write(markdown)
    with atomic_write(args.out / "table.csv") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "success_mean", "success_std", "delta_vs_start", "seeds", "finals", "turns",
                         "seconds_per_iteration"])
        for r in results:
            mean, std = mean_std(r.finals)
            writer.writerow([r.method, mean, std, mean - start_success, len(r.finals), json.dumps(r.finals),
                             statistics.fmean(r.turns), r.seconds_per_iteration])
    curves = {}
    for r in results:
        points = sorted((it, mean_std(values)) for it, values in r.curve.items() if values)
        curve = ([it for it, _ in points], [100 * m for _, (m, _) in points], [100 * s for _, (_, s) in points])
        curves[r.method] = curve
        plot_mean_curves({r.method: curve}, args.out / "curves" / f"{r.method}.png",
                         f"{r.method}: held-out success ({len(r.finals)} seeds)", "RL iteration", "success (%)")
    if curves:
        plot_mean_curves(curves, args.out / "learning_curves.png", "Held-out success, mean ± std over seeds",
                         "RL iteration", "success (%)")
    print(markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG)
    parser.add_argument("--methods", nargs="+", help="default: every registered method")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=8)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides for every run, key.sub=value")
    parser.add_argument("--report-only", action="store_true", help="only aggregate the runs that finished")
    args = parser.parse_args()
    methods = args.methods or [name for name, _ in available_credit()]
    base = load_config(args.config, [*args.set, f"out_dir={args.out / 'start'}"])
    sft_path, start_success = prepare_start(base, args.out / "start")
    if not args.report_only:
        for seed in args.seeds:  # seed-major: a partial run still compares every method
            for method in methods:
                run_method(args, method, seed, sft_path)
    results = [r for m in methods if (r := collect_result(args, m, start_success)) is not None]
    write_report(args, base, start_success, results)


if __name__ == "__main__":
    main()
