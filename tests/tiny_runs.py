"""The smallest real training run: the tiny model on the tiny TextWorld suite, 2 iterations of GRPO (seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path

from agent_rl.config import (
    AlgoConfig,
    EnvConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    PPOConfig,
    RolloutConfig,
    SFTConfig,
    TrainConfig,
)


def tiny_run_config(out: Path, model_dir: Path, suite: str, cache_dir: Path) -> TrainConfig:
    """A run of `model_dir` on the TextWorld `suite` generated into `cache_dir` (see conftest's fixtures)."""
    return TrainConfig(
        env=EnvConfig(id="textworld/demo-v0", kwargs={"suite": suite, "cache_dir": str(cache_dir)}, max_turns=3),
        model=ModelConfig(path=str(model_dir), device="cpu"),
        rollout=RolloutConfig(tasks_per_iteration=2, group_size=2, temperature=1.0, max_new_tokens=8),
        # GRPO's invalid-action penalty gives the untrained model non-zero advantages, so the update moves
        algo=AlgoConfig(name="grpo"),
        optim=OptimConfig(lr=1e-3),
        ppo=PPOConfig(mini_batch_rows=4, micro_batch_rows=2),
        sft=SFTConfig(enabled=True, epochs=1, lr=1e-3, batch_rows=4),
        eval=EvalConfig(seeds=[0], episodes=1),
        iterations=2,
        out_dir=str(out),
    )
