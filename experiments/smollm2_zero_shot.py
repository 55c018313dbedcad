"""Zero-shot baselines of SmolLM2-135M-Instruct on every built-in env family, through `agent-rl eval`.

    agent-rl models fetch smollm2-135m
    OMP_NUM_THREADS=1 nice -n 5 python experiments/smollm2_zero_shot.py [--envs search/demo-v0 ...]

Each env is played greedily with the action-only protocol (the bare command after a one-shot example,
agent_rl/rollout/protocols.py) on its held-out split, a few episodes and turns each (the model writes about
12 tokens/s on one CPU thread), and its table, metadata and episodes go to
experiments/results/smollm2/zero_shot/<env>/. `--protocol tags` runs the seed papers' <think>/<action> prompt.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import NamedTuple

from agent_rl.cli import main as agent_rl

RESULTS = Path(__file__).parent / "results" / "smollm2"


class Budget(NamedTuple):
    """How much of an env one baseline plays: episodes, turns per episode, new tokens per turn, history."""

    split: str
    episodes: int
    max_turns: int
    max_new_tokens: int
    history: int = 0


# Sized for one CPU thread: a command needs <= 12 tokens, a search query or a WebShop search ~24-32,
# a Python cell or a tool call up to ~64; a key-door corridor takes 8-20 moves (the credit arena's 20 turns).
# textworld/demo-v0 matches configs/smollm2_textworld.yaml's eval.
BUDGETS: dict[str, Budget] = {
    "textworld/demo-v0": Budget("test", 32, 4, 12),
    "alfworld/demo-v0": Budget("test", 12, 8, 12),
    "webshop/generated-v0": Budget("test", 16, 6, 32),
    "search/demo-v0": Budget("test", 8, 4, 32),
    "appworld/generated-v0": Budget("test", 4, 4, 64),
    "swegym/builtin-v0": Budget("test", 7, 4, 64),
    "keydoor/corridor-v0": Budget("test", 16, 20, 12),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--protocol", default="action-only", choices=["action-only", "tags"])
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    for env_id in args.envs:
        budget = BUDGETS[env_id]
        out = RESULTS / ("zero_shot" if args.protocol == "action-only" else f"zero_shot_{args.protocol}") \
            / env_id.replace("/", "_")
        start = time.perf_counter()
        code = agent_rl(["eval", "--env", env_id, "--policy", args.model, "--split", budget.split,
                         "-n", str(budget.episodes), "--max-turns", str(budget.max_turns),
                         "--max-new-tokens", str(budget.max_new_tokens), "--history", str(budget.history),
                         "--protocol", args.protocol, "--num-threads", "1", "--out", str(out)])
        print(f"{env_id}: exit {code}, {time.perf_counter() - start:.0f} s wall-clock", flush=True)


if __name__ == "__main__":
    main()
