"""How fast rollouts and one RL iteration are, measured in one run on this machine.

    python experiments/bench_collector.py --episodes 64 --turns 8
    python experiments/bench_collector.py --env textworld/demo-v0 --env-arg split=test --threads 1

Prints
(a) the raw engine rate: env.reset / env.step in a plain loop with random admissible actions;
(b) the Collector's env-steps/s with an instant policy (RandomPolicy) over `--episodes` episodes at once,
    and the ratio "collector / raw engine" (what the framework's bookkeeping costs on top of the engine);
(c) one RL iteration of the trainer on a tiny model built here, split into rollout / log-probs /
    update / credit (the `time/*` metrics of `RLTrainer.step`), in seconds and percent.
Both (a) and (b) play the same tasks from the same seeds with the same turn limit.
"""

from __future__ import annotations

import argparse
import functools
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from agent_rl.config import (
    AlgoConfig,
    EnvConfig,
    OptimConfig,
    PPOConfig,
    RolloutConfig,
    TinyModelConfig,
    TrainConfig,
)
from agent_rl.env_api import TextEnv
from agent_rl.eval.runner import parse_env_args
from agent_rl.policy.baselines import RandomPolicy
from agent_rl.policy.hf import load_model_and_tokenizer
from agent_rl.policy.tiny import build_tiny_model
from agent_rl.registry import make
from agent_rl.rollout.collector import Collector, EpisodeSpec
from agent_rl.rollout.memory import HistoryMemory
from agent_rl.rollout.parsing import format_action
from agent_rl.train.trainer import RLTrainer

TIME_KEYS = ("time/rollout", "time/logprobs", "time/update", "time/credit")


def episode_specs(num_tasks: int, episodes: int) -> list[EpisodeSpec]:
    return [EpisodeSpec(i % num_tasks, i, f"bench/t{i % num_tasks}", f"bench/e{i}") for i in range(episodes)]


def raw_engine_rate(env: TextEnv, specs: list[EpisodeSpec], turns: int, seed: int) -> tuple[int, float, list[str]]:
    """(env steps, seconds, text seen) for a plain reset/step loop with random admissible actions."""
    rng = random.Random(seed)
    steps, seen = 0, []
    start = time.perf_counter()
    for spec in specs:
        obs, info = env.reset(seed=spec.seed, options={"task_index": spec.task_index})
        seen.append(obs)
        for _ in range(turns):
            action = rng.choice(info["admissible_actions"])
            obs, _, terminated, truncated, info = env.step(action)
            steps += 1
            seen += [obs, format_action(action)]
            if terminated or truncated:
                break
    return steps, time.perf_counter() - start, seen


def collector_rate(make_env: Callable[[], TextEnv], specs: list[EpisodeSpec], turns: int,
                   seed: int) -> tuple[int, float, int]:
    """(env steps, seconds, policy calls) of `Collector.run` over every episode at once (envs built beforehand)."""
    collector = Collector(make_env, RandomPolicy(seed), HistoryMemory(), max_turns=turns)
    # Warm-up: builds one env per episode slot (an interpreter start each, for TextWorld). It plays the
    # specs shifted by one slot, so in the timed run every slot resets into another game, as in (a).
    collector.run(specs[1:] + specs[:1])
    start = time.perf_counter()
    collector.run(specs)
    elapsed = time.perf_counter() - start
    steps, calls = collector.timing.env_steps, collector.timing.policy_calls
    collector.close()
    return steps, elapsed, calls


def rl_iteration(args: argparse.Namespace, make_env: Callable[[], TextEnv], num_tasks: int,
                 corpus: list[str], work: Path) -> dict[str, float]:
    """Build the demo-sized tiny model from the text the engine produced and time one `RLTrainer.step`."""
    model_dir = build_tiny_model(work / "model", [HistoryMemory().system_prompt, *corpus], TinyModelConfig())
    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    config = TrainConfig(
        env=EnvConfig(id=args.env, max_turns=args.rl_turns),
        rollout=RolloutConfig(tasks_per_iteration=args.tasks, group_size=args.group, max_new_tokens=args.max_new_tokens),
        algo=AlgoConfig(name=args.algo),
        optim=OptimConfig(lr=1e-4),
        ppo=PPOConfig(mini_batch_rows=64, micro_batch_rows=32),
        seed=args.seed,
    )
    trainer = RLTrainer(config, model, tokenizer, make_env, num_tasks, work / "run")
    metrics = trainer.step()
    trainer.collector.close()
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="textworld/demo-v0", help="env id (default: textworld/demo-v0)")
    parser.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument for the env, repeatable (default for TextWorld: split=train)")
    parser.add_argument("--episodes", type=int, default=64, help="episodes for (a) and (b), played at once in (b)")
    parser.add_argument("--turns", type=int, default=8, help="turn limit per episode in (a) and (b)")
    parser.add_argument("--tasks", type=int, default=8, help="(c) tasks per RL iteration (demo: 8)")
    parser.add_argument("--group", type=int, default=8, help="(c) rollouts per task (demo: 8)")
    parser.add_argument("--rl-turns", type=int, default=6, help="(c) turn limit per episode (demo: 6)")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="(c) tokens per response (demo: 24)")
    parser.add_argument("--algo", default="gigpo", help="(c) credit assignment (default: gigpo)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-rl", action="store_true", help="only measure (a) and (b)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = parse_env_args(args.env_arg)
    if args.env.startswith("textworld/") and args.env != "textworld/games-v0":
        kwargs.setdefault("split", "train")
    make_env = functools.partial(make, args.env, **kwargs)

    env = make_env()
    num_tasks = env.num_tasks
    specs = episode_specs(num_tasks, args.episodes)
    print(f"env {args.env} {kwargs}: {num_tasks} tasks; {args.episodes} episodes, at most {args.turns} turns each; "
          f"torch threads {torch.get_num_threads()}")
    raw_episode = specs[: min(4, len(specs))]
    raw_engine_rate(env, raw_episode, args.turns, args.seed)  # warm-up: loads the games once
    raw_steps, raw_s, corpus = raw_engine_rate(env, specs, args.turns, args.seed)
    env.close()
    raw_rate = raw_steps / raw_s
    print(f"(a) raw engine:  {raw_steps:6d} env steps in {raw_s:7.2f} s = {raw_rate:8.1f} steps/s")

    steps, seconds, calls = collector_rate(make_env, specs, args.turns, args.seed)
    rate = steps / seconds
    print(f"(b) collector:   {steps:6d} env steps in {seconds:7.2f} s = {rate:8.1f} steps/s "
          f"({args.episodes} episodes at once, {calls} policy calls, RandomPolicy)")
    print(f"    collector / raw engine = {rate / raw_rate:.2f}")
    if args.skip_rl:
        return

    with tempfile.TemporaryDirectory(prefix="bench_collector_") as work:
        metrics = rl_iteration(args, make_env, num_tasks, corpus, Path(work))
    total = metrics["time/iteration"]
    print(f"(c) one RL iteration ({args.algo}, {args.tasks} tasks x {args.group} rollouts, {args.rl_turns} turns, "
          f"{args.max_new_tokens} new tokens; tiny model {TinyModelConfig().hidden_size}d x "
          f"{TinyModelConfig().num_layers} layers; {metrics['train/rows']} rows): {total:.2f} s")
    for key in TIME_KEYS:
        print(f"    {key.removeprefix('time/'):9s} {metrics[key]:8.2f} s  {100 * metrics[key] / total:5.1f} %")
    print(f"    train/success_rate {metrics['train/success_rate']:.3f}, train/invalid_rate "
          f"{metrics['train/invalid_rate']:.3f}, train/logprob_mismatch {metrics['train/logprob_mismatch']:.2e}")


if __name__ == "__main__":
    main()
