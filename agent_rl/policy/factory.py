"""The rollout policy a training config asks for: transformers generate, or a vLLM engine."""

from __future__ import annotations

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agent_rl.config import TrainConfig
from agent_rl.policy.base import Policy
from agent_rl.policy.hf import HFPolicy


def make_rollout_policy(config: TrainConfig, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                        rank: int = 0, distributed: bool = False) -> Policy:
    """`policy.backend`: hf samples with the trained model itself; vllm starts an engine loaded with its weights.

    Each rank's engine gets its own sampling seed, so ranks do not draw the same rollouts. With
    `train.mixed_precision: bf16` (fp32 master weights) the engine computes in bf16, as the update does.
    """
    rollout = config.rollout
    if config.policy.backend == "hf":
        return HFPolicy(model, tokenizer, rollout.temperature, rollout.max_new_tokens)
    from agent_rl.policy.vllm import build_vllm_policy, require_vllm

    require_vllm()  # the install hint before any GPU work
    return build_vllm_policy(config.policy.vllm, model, tokenizer, rollout.temperature, rollout.max_new_tokens,
                             seed=config.seed + rank, distributed=distributed, model_path=config.model.path,
                             dtype="bfloat16" if config.train.mixed_precision == "bf16" else None)
