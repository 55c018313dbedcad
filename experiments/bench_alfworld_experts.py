"""The planner and the exploring expert on the same ALFWorld games, in one run: wins, turns, seconds a step.

    python experiments/bench_alfworld_experts.py --path <json_2.1.1> --splits valid_seen valid_unseen \
        --out experiments/results/alfworld_experts/episodes.jsonl
    python experiments/bench_alfworld_experts.py --summarize experiments/results/alfworld_experts/*.jsonl

Every game is played by the planner (`expert_mode=planner`), then by the exploring expert
(`expert_mode=explore`), each following its own `info["expert_action"]` for at most `--turns` turns.
One JSONL record per episode (split, task, mode, won, turns, reset and step seconds, replans) is appended
as it finishes, so a killed run resumes where it stopped. A step's seconds include the expert's own work
(the exploring expert's on-demand replanning happens inside `step`, when the next info is made); a reset's
include the plan made at reset. The summary is a Markdown table per split and task type.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from agent_rl.envs.alfworld.engine import TASK_TYPES
from agent_rl.envs.alfworld.env import DEFAULT_MAX_STEPS, AlfWorldJsonEnv

from agent_rl.io import append_jsonl, read_jsonl

MODES = ("planner", "explore")


def play(env: AlfWorldJsonEnv, index: int, turns: int) -> dict:
    """One episode of `env`'s expert on task `index`: what it achieved and what it cost."""
    start = time.perf_counter()
    _, info = env.reset(options={"task_index": index})
    reset_s = time.perf_counter() - start
    steps, done = 0, False
    start = time.perf_counter()
    while not done and steps < turns:
        _, _, terminated, truncated, info = env.step(info["expert_action"])
        steps += 1
        done = terminated or truncated
    step_s = time.perf_counter() - start
    replans = env.explorer.replans if env.explorer is not None else None
    return {"won": bool(info["won"]), "turns": steps, "reset_s": reset_s, "step_s": step_s, "replans": replans}


def run(path: str, splits: list[str], out: Path, turns: int, limit: int | None, modes: tuple[str, ...] = MODES) -> None:
    done = {(r["split"], r["task_id"], r["mode"]) for r in read_jsonl(out)} if out.exists() else set()
    for split in splits:
        envs = {mode: AlfWorldJsonEnv(path=path, split=split, expert=True, expert_mode=mode, max_steps=turns)
                for mode in modes}
        tasks = envs[modes[0]].tasks[:limit]
        for index, task in enumerate(tasks):
            for mode, env in envs.items():
                if (split, task.task_id, mode) in done:
                    continue
                record = {"split": split, "task_id": task.task_id, "task_type": task.task_type, "mode": mode,
                          **play(env, index, turns)}
                append_jsonl(out, [record])
                print(f"{split} {index + 1}/{len(tasks)} {mode:8s} won={record['won']} turns={record['turns']} "
                      f"step {record['step_s'] / max(record['turns'], 1):.3f} s {task.task_id}", flush=True)
        for env in envs.values():
            env.close()


def summarize(*outs: Path, turns: int = DEFAULT_MAX_STEPS) -> str:
    """The Markdown table of one or more runs' records, per split and task type: each expert's wins within
    `turns` over every game it played; turns and cost over the games both played (the same games, same run):
    mean turns, milliseconds a step (the explorer's on-demand replanning included) and their ratio, and
    seconds an episode, reset (its plan) included."""
    records = [record for out in outs for record in read_jsonl(out)]
    played: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in records:
        played[(record["split"], record["task_id"])].add(record["mode"])
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for record in records:
        for task_type in (record["task_type"], "all"):
            groups[(record["split"], task_type, record["mode"])].append(record)

    def wins(rows: list[dict]) -> str:
        return f"{sum(r['won'] and r['turns'] <= turns for r in rows)}/{len(rows)}"

    def paired(rows: list[dict]) -> list[dict]:
        return [r for r in rows if played[(r["split"], r["task_id"])] >= set(MODES)]

    def mean(rows: list[dict], key: str) -> float:
        return sum(r[key] for r in rows) / len(rows)

    def ms_per_step(rows: list[dict]) -> float:
        return 1000 * sum(r["step_s"] for r in rows) / sum(r["turns"] for r in rows)

    def episode_s(rows: list[dict]) -> float:
        return sum(r["reset_s"] + r["step_s"] for r in rows) / len(rows)

    lines = [(f"| split | task type | planner won (<= {turns} turns) | explorer won | games both played | "
             "planner turns | explorer turns (max) | planner ms/step | explorer ms/step | ratio | "
             "s/episode incl. reset (planner / explorer) | explorer replans/episode |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for split in sorted({key[0] for key in groups}):
        for task_type in (*TASK_TYPES, "all"):
            planner, explorer = groups.get((split, task_type, "planner"), []), groups.get((split, task_type, "explore"), [])
            both_p, both_e = paired(planner), paired(explorer)
            if not planner and not explorer:
                continue
            row = f"| {split} | {task_type} | {wins(planner)} | {wins(explorer)} | {len(both_e)} |"
            if both_e:
                ratio = ms_per_step(both_e) / ms_per_step(both_p)
                row += (f" {mean(both_p, 'turns'):.1f} | {mean(both_e, 'turns'):.1f} ({max(r['turns'] for r in both_e)}) |"
                        f" {ms_per_step(both_p):.0f} | {ms_per_step(both_e):.0f} | {ratio:.2f} |"
                        f" {episode_s(both_p):.1f} / {episode_s(both_e):.1f} | {mean(both_e, 'replans'):.1f} |")
            else:
                row += " - | - | - | - | - | - | - |"
            lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", help="the json_2.1.1 folder of the official ALFWorld games")
    parser.add_argument("--splits", nargs="+", default=["valid_seen", "valid_unseen"])
    parser.add_argument("--out", type=Path, default=Path("experiments/results/alfworld_experts/episodes.jsonl"))
    parser.add_argument("--turns", type=int, default=DEFAULT_MAX_STEPS, help="turn limit (the papers' 50)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="the experts to play (both by default; the table compares them on the games both played)")
    parser.add_argument("--limit", type=int, default=None, help="play only the first N games of each split")
    parser.add_argument("--summarize", type=Path, nargs="+", metavar="JSONL",
                        help="only print the table of finished runs (one split each, or several)")
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize(*args.summarize, turns=args.turns))
        return
    if not args.path:
        parser.error("--path <json_2.1.1 folder> is needed to play the games (or --summarize <jsonl>)")
    run(args.path, args.splits, args.out, args.turns, args.limit, tuple(args.modes))
    print(summarize(args.out, turns=args.turns))


if __name__ == "__main__":
    main()
