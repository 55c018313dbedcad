"""How fast `agent-rl view` renders a large run and how fast the page opens in headless Chromium.

    python experiments/bench_view.py --episodes 10000 --per-iteration 200 --eval-episodes 10000

Builds a synthetic run with the project's own data model and writers (trajectories/iter-*.jsonl of
`--per-iteration` episodes each, metrics.jsonl, config.yaml, an eval folder of `--eval-episodes`), times
`render_report`, then opens pages of the report in Chromium `--repeats` times each: the process's wall-clock
(start, load, scripts, exit) and the page's own time from navigation start to the rendered view
(`data-render-ms`). The baseline is an empty page opened the same way in the same run, so the ratio is
what the report adds to Chromium's own start-up.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from agent_rl.config import TrainConfig, to_yaml
from agent_rl.data import Step, Trajectory
from agent_rl.eval.tables import EpisodeRecord, EvalProtocol, summarize, write_tables
from agent_rl.io import append_jsonl, atomic_write, write_json, write_trajectories
from agent_rl.view import render_report
from agent_rl.view.browser import open_page

WORDS = ["kitchen", "cellar", "pantry", "chest", "table", "lamp", "key", "apple", "coin", "drawer", "open",
         "take", "put", "examine", "north", "south", "east", "west", "look", "inventory", "golden",
         "rusty", "wooden", "the", "a", "of", "on", "in", "into", "from", "there", "is", "you", "see",
         "closed"]


def sentence(rng: np.random.Generator, words: int) -> str:
    return " ".join(rng.choice(WORDS, size=words))


def synthetic_episode(rng: np.random.Generator, group: str, rollout: int, task: int, steps: int) -> Trajectory:
    success = bool(rng.random() < 0.4)
    states = [f"{task}-{int(s)}" for s in rng.integers(0, 3, size=steps)]  # repeated states: step groups
    trajectory_steps = [
        Step(obs=sentence(rng, 45), anchor=state, prompt=sentence(rng, 160),
             response=f"<think>{sentence(rng, 8)}</think><action>{sentence(rng, 3)}</action>", action=sentence(rng, 3),
             reward=1.0 if success and i == steps - 1 else 0.0, valid=bool(rng.random() < 0.9),
             advantage=float(rng.normal()))
        for i, state in enumerate(states)
    ]
    return Trajectory(task_id=f"task/{task:04d}", group_id=group, traj_id=f"{group}/r{rollout}", steps=trajectory_steps,
                      outcome=float(success), success=success, terminated=success, truncated=not success,
                      metadata={"task_type": f"quest{task % 3 + 1}", "seed": task})


def build_run(root: Path, episodes: int, per_iteration: int, group_size: int, steps: int, eval_episodes: int) -> Path:
    rng = np.random.default_rng(0)
    run = root / "run"
    with atomic_write(run / "config.yaml") as handle:
        handle.write(to_yaml(TrainConfig()))
    for iteration in range(1, episodes // per_iteration + 1):
        batch = [synthetic_episode(rng, f"it{iteration}/g{i // group_size}", i % group_size, i // group_size, steps)
                 for i in range(per_iteration)]
        write_trajectories(run / "trajectories" / f"iter-{iteration:06d}.jsonl", batch, append=False)
        append_jsonl(run / "metrics.jsonl", [{
            "iteration": iteration, "train/success_rate": float(np.mean([t.success for t in batch])),
            "train/mean_outcome": float(np.mean([t.outcome for t in batch])), "train/approx_kl": float(rng.random() / 100),
            "train/entropy": float(2 + rng.random()), "train/loss": float(rng.normal()),
            "train/logprob_mismatch": 1e-6, "time/rollout": 10.0, "time/update": 5.0, "time/iteration": 15.0}])
    folder = run / "eval" / "after_rl"
    batch = [synthetic_episode(rng, "seed0", 0, i, steps) for i in range(eval_episodes)]
    write_trajectories(folder / "episodes.jsonl", batch, append=False)
    protocol = EvalProtocol(env_id="synthetic-v0", split="test", policy="synthetic", seeds=(0,),
                            episodes_per_seed=eval_episodes, catalog_size=eval_episodes, max_steps=steps,
                            success_definition="synthetic")
    write_json(folder / "metadata.json", {"protocol": protocol.to_dict()})
    write_tables(folder, summarize(EpisodeRecord.from_trajectory(t, 0) for t in batch), protocol)
    return run


def timed_page(url: str, repeats: int) -> tuple[float, float]:
    """Median Chromium wall-clock (s) and median in-page render time (ms) of `url`."""
    walls, renders = [], []
    for _ in range(repeats):
        page = open_page(url, budget_ms=30000)
        if page.console:
            raise RuntimeError(f"{url}: console messages {page.console}")
        walls.append(page.seconds)
        found = re.search(r'data-render-ms="([\d.]+)"', page.dom)
        renders.append(float(found.group(1)) if found else float("nan"))
    return statistics.median(walls), statistics.median(renders)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10000, help="RL episodes in the run")
    parser.add_argument("--per-iteration", type=int, default=200)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="steps per episode")
    parser.add_argument("--eval-episodes", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-view-") as tmp:
        root = Path(tmp)
        clock = time.perf_counter()
        run = build_run(root, args.episodes, args.per_iteration, args.group_size, args.steps, args.eval_episodes)
        built = time.perf_counter() - clock
        source_mb = sum(p.stat().st_size for p in run.rglob("*.jsonl")) / 1e6
        clock = time.perf_counter()
        index = render_report(run, root / "report")
        rendered = time.perf_counter() - clock
        data = sorted((p.stat().st_size, p.name) for p in (root / "report" / "data").iterdir())
        print(f"synthetic run: {args.episodes} RL episodes ({args.episodes // args.per_iteration} iterations x "
              f"{args.per_iteration}, groups of {args.group_size}, {args.steps} steps each) + {args.eval_episodes} eval "
              f"episodes; {source_mb:.1f} MB of JSONL, written in {built:.1f} s")
        print(f"render_report: {rendered:.2f} s; {len(data)} data files, {sum(s for s, _ in data) / 1e6:.1f} MB, "
              f"largest {data[-1][1]} {data[-1][0] / 1e6:.1f} MB, summary.js "
              f"{(root / 'report' / 'data' / 'summary.js').stat().st_size / 1e3:.0f} kB")
        blank = root / "blank.html"
        blank.write_text("<!doctype html><html><body><p>blank</p></body></html>")
        base_wall, _ = timed_page(blank.resolve().as_uri(), args.repeats)
        url = index.resolve().as_uri()
        last = args.episodes // args.per_iteration
        print(f"Chromium, median of {args.repeats} (process wall-clock | page's own time to the rendered view):")
        print(f"  blank page (baseline)          {base_wall:6.2f} s")
        for label, page in (("overview (curves, tables)", ""), ("first iteration", "#iter=1"),
                            (f"iteration {last}", f"#iter={last}"),
                            (f"eval, {args.eval_episodes} episodes", "#eval=after_rl")):
            wall, render = timed_page(url + page, args.repeats)
            print(f"  {label:30s} {wall:6.2f} s | {render / 1000:5.2f} s   ({wall / base_wall:.2f} x blank)")


if __name__ == "__main__":
    main()
