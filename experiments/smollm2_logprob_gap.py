"""How far the trainer's log-probs of sampled tokens are from the rollout's, with SmolLM2's real tokenizer.

    OMP_NUM_THREADS=1 nice -n 5 python experiments/smollm2_logprob_gap.py --prompts 8

The rollout samples (temperature 1) a response to each of `--prompts` real textworld/demo-v0 prompts
(action-only protocol, history 0 and 1 mixed, so prompt lengths differ) in ONE left-padded generate call
with a KV cache; the trainer recomputes the same tokens' log-probs from the stored ids, in rows padded to
another width (reversed order) and in micro-batches of 1, 2 and all rows. Prints the largest and mean
|rollout - trainer| over response tokens for each micro-batch size (what `train/logprob_mismatch` reports).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from agent_rl.data import Step
from agent_rl.policy.base import PolicyRequest
from agent_rl.policy.hf import HFPolicy, load_model_and_tokenizer
from agent_rl.registry import make
from agent_rl.rollout.memory import HistoryMemory
from agent_rl.rollout.protocols import ACTION_ONLY
from agent_rl.train.losses import response_logprobs
from agent_rl.train.rows import build_token_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(args.model)
    model.eval()
    env = make("textworld/demo-v0", split="test")
    requests = []
    for i in range(args.prompts):
        obs, info = env.reset(seed=0, options={"task_index": i})
        memory = HistoryMemory(window=i % 2, protocol=ACTION_ONLY)
        history = [("You look around.", "look")] if i % 2 else []
        requests.append(PolicyRequest(memory.messages(info["task"], history, obs, info["admissible_actions"])))
    env.close()
    outputs = HFPolicy(model, tokenizer, temperature=1.0, max_new_tokens=args.max_new_tokens).act(requests)
    steps = [Step(obs="", anchor="", prompt=o.prompt_text, response=o.text, action=None, reward=0.0, valid=True,
                  prompt_ids=o.prompt_ids, response_ids=o.token_ids, logprobs=o.logprobs) for o in outputs][::-1]
    rows = build_token_rows(steps, np.zeros(len(steps)), tokenizer.pad_token_id)
    lengths = [len(o.prompt_ids) for o in outputs]
    print(f"{args.model}: {len(steps)} responses, prompts {min(lengths)}-{max(lengths)} tokens, "
          f"{int(rows.response_mask.sum())} response tokens; attention {model.config._attn_implementation}, "
          f"dtype {next(model.parameters()).dtype}, torch threads {torch.get_num_threads()}")
    for micro in sorted({1, 2, len(steps)}):
        gaps = []
        with torch.no_grad():
            for start in range(0, len(steps), micro):
                part = rows.select(list(range(start, min(start + micro, len(steps)))))
                gap = (response_logprobs(model, part) - part.old_logprobs).abs()[part.response_mask.bool()]
                gaps.append(gap)
        every = torch.cat(gaps)
        print(f"micro-batch {micro}: max |gap| {every.max().item():.2e}, mean {every.mean().item():.2e}")


if __name__ == "__main__":
    main()
