"""GPU throughput of the scale-out path: vLLM rollout tokens/s, update tokens/s, one iteration's time split.

    python experiments/bench_gpu.py --model Qwen/Qwen2.5-1.5B-Instruct
    python experiments/bench_gpu.py --model Qwen/Qwen2.5-7B-Instruct --requests 128 --max-new-tokens 512

Measures, on this machine's first GPU (named in the output):
(a) rollout: one batched `VLLMPolicy.act` of `--requests` prompts shaped like the papers' turns (16 tasks
    x group 8 = 128 live episodes), sampled tokens per second;
(b) update: `optimizer_step` (PPO loss, AdamW, micro-batches, bf16 autocast, gradient checkpointing) on
    those rollouts, response and prompt tokens per second of forward + backward;
(c) the weight sync into the engine and its log-prob check (max |vLLM - trainer| on the same tokens);
(d) one `RLTrainer.step` on TextWorld with vLLM rollouts, split into its `time/*` parts.
Writes experiments/results/bench_gpu/<gpu>_<model>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from agent_rl.config import (
    AlgoConfig,
    EnvConfig,
    OptimConfig,
    PolicyConfig,
    PPOConfig,
    RolloutConfig,
    TrainConfig,
    TrainSettings,
    VLLMSettings,
)
from agent_rl.data import Step
from agent_rl.policy.base import PolicyRequest
from agent_rl.policy.hf import load_model_and_tokenizer
from agent_rl.policy.vllm import build_vllm_policy, max_logprob_gap
from agent_rl.rollout.memory import DEFAULT_SYSTEM_PROMPT
from agent_rl.train.distributed import Distributed
from agent_rl.train.losses import batch_response_logprobs
from agent_rl.train.rows import build_token_rows
from agent_rl.train.trainer import RLTrainer, make_optimizer
from agent_rl.train.update import make_ppo_loss, optimizer_step

TURN = ("-= Kitchen =- You are in a kitchen. You see a closed fridge, a countertop 1 and a cabinet 2. On the "
        "countertop 1 you see a mug 1 and an apple 2.\nYour task is to: put a cool apple in the microwave.\n"
        "Admissible actions: go to fridge 1 | take apple 2 from countertop 1 | open cabinet 2 | look | inventory\n"
        "Think step by step inside <think></think>, then give one admissible action inside <action></action>.")


def timed(fn):
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model directory or hub name")
    parser.add_argument("--requests", type=int, default=128, help="live episodes per rollout call (papers: 16 x 8)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--micro-batch-rows", type=int, default=8)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.35)
    parser.add_argument("--out", default="experiments/results/bench_gpu")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu needs a CUDA device")
    gpu = torch.cuda.get_device_name(0)

    model, tokenizer = load_model_and_tokenizer(args.model, dtype="float32", device="cuda")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    dist = Distributed.from_settings(TrainSettings(mixed_precision="bf16"))
    settings = VLLMSettings(gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=4096)
    (policy, start_s) = timed(lambda: build_vllm_policy(settings, model, tokenizer, 1.0, args.max_new_tokens, seed=0,
                                                        distributed=False, model_path=args.model, dtype="bfloat16"))
    requests = [PolicyRequest([{"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                               {"role": "user", "content": f"{TURN}\n(episode {i})"}]) for i in range(args.requests)]
    policy.act(requests[:8])  # warm-up: CUDA graphs, kernels
    outputs, rollout_s = timed(lambda: policy.act(requests))
    sampled = sum(len(o.token_ids) for o in outputs)

    steps = [Step(obs="", anchor="", prompt="", response="", action=None, reward=0.0, valid=True,
                  prompt_ids=o.prompt_ids, response_ids=o.token_ids, logprobs=o.logprobs) for o in outputs]
    rows = build_token_rows(steps, np.random.default_rng(0).normal(size=len(steps)), tokenizer.pad_token_id)
    policy.release_memory()
    train_model, optimizer = dist.prepare(model, make_optimizer(model, 1e-6, TrainConfig()))
    loss = make_ppo_loss(PPOConfig())
    stats, update_s = timed(lambda: optimizer_step(train_model, optimizer, rows, args.micro_batch_rows, loss, 1.0,
                                                   dist=dist))
    tokens = int(rows.attention_mask.sum())
    _, sync_s = timed(lambda: policy.sync_weights(model))
    sample = rows.select(range(min(16, rows.num_rows)))
    prompts, responses = sample.sequences()
    gap = max_logprob_gap(policy.score(prompts, responses), batch_response_logprobs(train_model, sample, 8),
                          sample.response_mask)

    iteration = one_iteration(model, tokenizer, policy, args)
    result = {
        "gpu": gpu, "model": args.model, "torch": torch.__version__, "vllm": __import__("vllm").__version__,
        "engine_start_s": start_s, "requests": args.requests, "sampled_tokens": sampled, "rollout_s": rollout_s,
        "rollout_tokens_per_s": sampled / rollout_s, "update_rows": rows.num_rows, "update_tokens": tokens,
        "update_s": update_s, "update_tokens_per_s": tokens / update_s, "update_loss": stats["loss"],
        "weight_sync_s": sync_s, "sync_logprob_gap": gap, "iteration": iteration,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"\W+", "_", f"{gpu}_{Path(args.model).name}").strip("_")
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(f"| GPU | model | rollout tok/s | update tok/s | sync s | sync gap |\n|---|---|---|---|---|---|\n"
          f"| {gpu} | {args.model} | {result['rollout_tokens_per_s']:.0f} | {result['update_tokens_per_s']:.0f} | "
          f"{sync_s:.2f} | {gap:.2e} |")
    print("one iteration:", {k: round(v, 2) for k, v in iteration.items()})
    print(f"wrote {out / f'{name}.json'}")


def one_iteration(model, tokenizer, policy, args) -> dict[str, float]:
    """One `RLTrainer.step` on TextWorld's demo suite, 16 tasks x group 8, vLLM rollouts; its time/* metrics."""
    from agent_rl.env_api import describe_tasks
    from agent_rl.registry import make

    config = TrainConfig(env=EnvConfig(id="textworld/demo-v0", max_turns=8),
                         rollout=RolloutConfig(tasks_per_iteration=16, group_size=8, max_new_tokens=args.max_new_tokens),
                         algo=AlgoConfig(name="gigpo"), optim=OptimConfig(lr=1e-6),
                         ppo=PPOConfig(mini_batch_rows=256, micro_batch_rows=args.micro_batch_rows),
                         policy=PolicyConfig(backend="vllm"))  # the model's forward already autocasts (prepared above)
    make_env = lambda: make("textworld/demo-v0", split="train")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = RLTrainer(config, model, tokenizer, make_env, num_tasks=describe_tasks(make_env).size,
                            out_dir=Path(tmp), policy=policy)
        metrics = trainer.step()
    return {k: float(v) for k, v in metrics.items() if k.startswith("time/")}


if __name__ == "__main__":
    main()
