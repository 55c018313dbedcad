"""Where a WebShop policy gains or loses: per-step skills read off the episodes of evaluation runs.

    python experiments/webshop_steps.py runs/webshop_demo/eval/after_sft runs/webshop_demo/eval/after_rl

For each folder holding an `episodes.jsonl` (written by `agent-rl eval` or by `agent-rl train`'s
evaluations) it prints one row: how often the first search types the instruction verbatim, the first
click on a results page opens the top result (what the first-result expert does) or any listed item,
an option click names a value the instruction asks for, the episode reaches Buy Now, and the success
rate and mean score. The instruction is read from the "Task: ..." line the prompt starts with.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from agent_rl.envs.webshop.site import BACK_TO_SEARCH, BUY_NOW, ITEM, PREV, RESULTS, SUB_PAGES

from agent_rl.io import read_jsonl

_TASK = re.compile(r"Task: (.*)")
_RESULT_IDS = re.compile(r"\[SEP\] ([A-Z0-9]{10}) \[SEP\]")  # product ids as the results page lists them
_NOT_OPTIONS = {name.lower() for name in (BUY_NOW, PREV, BACK_TO_SEARCH, *SUB_PAGES)}


def _page(anchor: str) -> str:
    match = re.search(r"\| page: (\w+)", anchor)
    return match.group(1) if match else ""


def _action(step: dict) -> str:
    return (step["action"] or "").strip().lower()  # None: the response held no parsable action


def step_skills(episodes: list[dict]) -> dict[str, float]:
    """Shares of episodes (or of option clicks) showing each skill; see the module docstring."""
    counts = dict.fromkeys(("search_verbatim", "top_result", "listed_item", "buy", "won"), 0)
    option_clicks = wanted_options = 0
    score = 0.0
    for episode in episodes:
        steps = episode["steps"]
        task = _TASK.search(steps[0]["prompt"]).group(1).strip().lower()
        counts["search_verbatim"] += _action(steps[0]) == f"search[{task}]"
        first_results = next((s for s in steps if _page(s["anchor"]) == RESULTS), None)
        if first_results is not None:
            listed = [f"click[{pid}]".lower() for pid in _RESULT_IDS.findall(first_results["obs"])]
            action = _action(first_results)
            counts["top_result"] += bool(listed) and action == listed[0]
            counts["listed_item"] += action in listed
        for step in steps:
            clicked = re.fullmatch(r"click\[(.*)\]", _action(step))
            if _page(step["anchor"]) == ITEM and clicked and clicked.group(1) not in _NOT_OPTIONS:
                option_clicks += 1
                wanted_options += clicked.group(1) in task
        counts["buy"] += any(_action(s) == f"click[{BUY_NOW.lower()}]" for s in steps)
        counts["won"] += bool(episode["success"])
        score += episode["outcome"]
    shares = {name: count / len(episodes) for name, count in counts.items()}
    return {**shares, "option_named": wanted_options / max(option_clicks, 1), "option_clicks": option_clicks,
            "mean_score": score / len(episodes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="folders holding episodes.jsonl")
    args = parser.parse_args()
    print("| run | episodes | search = instruction | opens top result | opens a listed item | option clicks "
          "named in the instruction | reaches Buy Now | success | mean score |")
    print("|---|---|---|---|---|---|---|---|---|")
    for folder in args.folders:
        episodes = read_jsonl(folder / "episodes.jsonl")
        if not episodes:
            raise SystemExit(f"{folder / 'episodes.jsonl'} holds no episode")
        s = step_skills(episodes)
        print(f"| {folder} | {len(episodes)} | {s['search_verbatim']:.0%} | {s['top_result']:.0%} | "
              f"{s['listed_item']:.0%} | {s['option_named']:.0%} of {s['option_clicks']} | {s['buy']:.0%} | "
              f"{s['won']:.0%} | {s['mean_score']:.3f} |")


if __name__ == "__main__":
    main()
