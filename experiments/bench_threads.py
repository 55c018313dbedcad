"""One tiny-model training step with 1 vs 2 (or more) torch intra-op threads, side by side in one run.

    python experiments/bench_threads.py --threads 1 2 --rounds 5

The same SFT optimizer step (forward + backward + AdamW on `--rows` rows of the planner's TextWorld
demo episodes, the demo's tiny model: 4 layers x 128) is timed with each thread count in turn,
alternating within every round so that a change in the machine's load hits every count alike. Prints
the median seconds per step for each count and its ratio to the first count. On a machine shared with
other jobs, more threads than free cores is slower: that is why `train.num_threads` exists.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from agent_rl.config import TinyModelConfig
from agent_rl.policy.baselines import ExpertPolicy
from agent_rl.policy.chat import ChatCodec
from agent_rl.policy.hf import load_model_and_tokenizer
from agent_rl.policy.tiny import build_tiny_model
from agent_rl.registry import make
from agent_rl.rollout.memory import HistoryMemory
from agent_rl.train.rows import build_token_rows, steps_of
from agent_rl.train.sft import collect_demonstrations
from agent_rl.train.threads import available_cores
from agent_rl.train.update import optimizer_step, sft_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=16, help="rows per optimizer step")
    parser.add_argument("--tasks", type=int, default=16, help="held-out games whose expert episodes give the rows")
    args = parser.parse_args()

    memory = HistoryMemory(window=1)
    make_env = functools.partial(make, "textworld/demo-v0", split="test", expert=True)
    with tempfile.TemporaryDirectory() as work:
        corpus_demos = collect_demonstrations(make_env, ExpertPolicy(), args.tasks, 1, memory, 4, "textworld/demo-v0")
        corpus = [memory.system_prompt] + [x for t in corpus_demos for s in t.steps for x in (s.prompt, s.response)]
        model_dir = build_tiny_model(Path(work) / "model", corpus, TinyModelConfig())
        model, tokenizer = load_model_and_tokenizer(str(model_dir))
    demos = collect_demonstrations(make_env, ExpertPolicy(ChatCodec(tokenizer)), args.tasks, 1, memory, 4,
                                   "textworld/demo-v0")
    steps = steps_of(demos)
    rows = build_token_rows(steps, np.zeros(len(steps)), tokenizer.pad_token_id).select(
        [i % len(steps) for i in range(args.rows)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    times: dict[int, list[float]] = {n: [] for n in args.threads}
    for round_index in range(args.rounds + 1):  # round 0 warms up the allocator and kernels
        for n in args.threads:
            torch.set_num_threads(n)
            start = time.perf_counter()
            optimizer_step(model, optimizer, rows, args.rows, sft_loss, grad_clip=1.0)
            if round_index:
                times[n].append(time.perf_counter() - start)
    base = statistics.median(times[args.threads[0]])
    print(f"cores this process may use: {available_cores()}; {args.rows} rows x "
          f"{rows.input_ids.shape[1]} tokens a step; {args.rounds} rounds, thread counts alternating")
    for n in args.threads:
        median = statistics.median(times[n])
        print(f"threads {n}: median {median:.3f} s/step (min {min(times[n]):.3f}, max {max(times[n]):.3f}); "
              f"ratio to {args.threads[0]} thread(s): {median / base:.2f}")


if __name__ == "__main__":
    main()
