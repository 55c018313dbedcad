"""TRL where it fits: the SFT warm-start on TRL's SFTTrainer, and GRPOTrainer on an agent-rl env."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from agent_rl.integrations.trl import EnvRollout, TranscriptPolicy, episode_sequence
from agent_rl.policy.baselines import ExpertPolicy
from agent_rl.policy.chat import ChatCodec
from agent_rl.rollout.collector import Collector, EpisodeSpec
from agent_rl.rollout.memory import HistoryMemory
from agent_rl.train.sft import collect_demonstrations, sft_train, sft_trainer
from agent_rl.train.sft_trl import micro_batch_size, trl_sft_train

needs_trl = pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="TRL not installed: agent-rl[trl]")


@pytest.fixture
def demonstrations(tiny_model, textworld_env_factory):
    _, tokenizer = tiny_model
    return collect_demonstrations(lambda: textworld_env_factory("train", expert=True),
                                  ExpertPolicy(ChatCodec(tokenizer)), num_tasks=2, episodes_per_task=1,
                                  memory=HistoryMemory(), max_turns=6, env_id="textworld/demo-v0")


@pytest.mark.parametrize("batch, micro, expected", [(16, 32, 16), (16, 8, 8), (12, 8, 6), (7, 4, 1)])
def test_micro_batch_divides_the_batch(batch: int, micro: int, expected: int):
    assert micro_batch_size(batch, micro) == expected


@needs_trl
def test_trl_sft_trains_the_tokens_and_mask_our_sft_trains(tiny_model_dir, demonstrations):
    """At lr 0, one optimizer step over every row: TRL's loss is exactly our token-mean NLL of the same rows."""
    from agent_rl.policy.hf import load_model_and_tokenizer

    rows = sum(len(t.steps) for t in demonstrations)
    ours_model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    ours = sft_train(ours_model, tokenizer, demonstrations, epochs=1, lr=0.0, batch_rows=rows, micro_batch_rows=2,
                     grad_clip=1.0, weight_decay=0.0)
    trl_model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    theirs = trl_sft_train(trl_model, tokenizer, demonstrations, epochs=1, lr=0.0, batch_rows=rows,
                           micro_batch_rows=rows, grad_clip=1.0, weight_decay=0.0)
    assert theirs == pytest.approx(ours, rel=1e-4)


@needs_trl
def test_trl_sft_lowers_the_loss(tiny_model, demonstrations):
    model, tokenizer = tiny_model
    epochs: list[int] = []
    losses = trl_sft_train(model, tokenizer, demonstrations, epochs=8, lr=1e-2, batch_rows=8, micro_batch_rows=2,
                           grad_clip=1.0, weight_decay=0.0, on_epoch=lambda epoch, _: epochs.append(epoch))
    assert epochs == list(range(8)) and len(losses) == 8
    assert losses[-1] < 0.7 * losses[0], losses


# --- GRPOTrainer on an agent-rl env (agent_rl.integrations.trl) ----------------------------------


def test_an_episode_is_one_sequence_of_exactly_the_sampled_tokens(tiny_model, textworld_env_factory):
    """Multi-turn episodes of the transcript policy: the sampled ids in the context they were sampled in,
    env turns masked out, and the sampling log-probs are what a forward pass over the sequence gives."""
    model, tokenizer = tiny_model
    torch.manual_seed(0)
    collector = Collector(lambda: textworld_env_factory("train"), TranscriptPolicy(model, tokenizer, 1.0, 8),
                          HistoryMemory(window=0), max_turns=3, env_id="textworld/demo-v0")
    episodes = collector.run([EpisodeSpec(task, 0, f"g{task}", f"g{task}/r{r}") for task in (0, 1) for r in (0, 1)])
    collector.close()
    assert any(len(t.steps) > 1 for t in episodes)  # the untrained model rarely wins in one turn
    for trajectory in episodes:
        steps = trajectory.steps
        seq = episode_sequence(trajectory)
        assert seq.prompt_ids == steps[0].prompt_ids
        assert seq.prompt_ids + seq.completion_ids == steps[-1].prompt_ids + steps[-1].response_ids
        assert len(seq.completion_ids) == len(seq.env_mask) == len(seq.logprobs)
        sampled = [token for token, keep in zip(seq.completion_ids, seq.env_mask) if keep]
        assert sampled == [token for step in steps for token in step.response_ids]
        assert [lp for lp, keep in zip(seq.logprobs, seq.env_mask) if keep] == [lp for s in steps for lp in s.logprobs]
        assert all(lp == 0.0 for lp, keep in zip(seq.logprobs, seq.env_mask) if not keep)
        for step in steps[1:]:  # the env's next turn (its observation) sits, unmasked, between two responses
            env_text = tokenizer.decode([t for t, keep in zip(seq.completion_ids, seq.env_mask) if not keep])
            assert step.obs.strip()[:40] in env_text
        ids = torch.tensor([seq.prompt_ids + seq.completion_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1).gather(-1, ids[0, 1:, None])[:, 0]
        recomputed = logp[len(seq.prompt_ids) - 1:]
        mask = torch.tensor(seq.env_mask, dtype=torch.bool)
        assert torch.allclose(recomputed[mask], torch.tensor(seq.logprobs)[mask], atol=1e-4)


def test_a_prompt_that_is_not_a_task_is_a_clear_error(textworld_suite, tiny_suite_name):
    rollout = EnvRollout("textworld/demo-v0", env_kwargs=_tiny_env(textworld_suite, tiny_suite_name))
    with pytest.raises(ValueError, match="is not a task of this rollout"):
        rollout._task_of("What is 2 + 2?")
    with pytest.raises(ValueError, match="num_tasks must be between 1 and the 2 tasks"):
        rollout.dataset(num_tasks=3)


def test_truncated_sampling_settings_are_refused(textworld_suite, tiny_suite_name):
    from types import SimpleNamespace

    rollout = EnvRollout("textworld/demo-v0", env_kwargs=_tiny_env(textworld_suite, tiny_suite_name))
    with pytest.raises(ValueError, match="set top_p=1.0"):
        rollout(["agent-rl textworld/demo-v0 train task 0"], SimpleNamespace(args=SimpleNamespace(top_p=0.9)))


def test_sft_backend_selects_the_training_loop():
    assert sft_trainer("agent_rl", 0) is sft_train
    assert sft_trainer("trl", 3).func is trl_sft_train and sft_trainer("trl", 3).keywords == {"seed": 3}


def _tiny_env(textworld_suite, suite_name: str) -> dict:
    return {"suite": suite_name, "cache_dir": str(textworld_suite.cache_dir)}


@needs_trl
@pytest.mark.slow
def test_grpo_trainer_trains_the_tiny_model_on_textworld(tiny_model, demonstrations, textworld_suite,
                                                        tiny_suite_name, tmp_path):
    """Two GRPOTrainer steps, end to end on CPU: rollouts in the real env, its rewards, an update."""
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = tiny_model
    sft_train(model, tokenizer, demonstrations, epochs=20, lr=1e-2, batch_rows=8, micro_batch_rows=4, grad_clip=1.0,
              weight_decay=0.0)  # a warm start, so that some episodes win and groups have something to contrast
    rollout = EnvRollout("textworld/demo-v0", env_kwargs=_tiny_env(textworld_suite, tiny_suite_name), max_turns=3,
                         max_new_tokens=24, invalid_penalty_coef=0.1)
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=4, max_steps=2,
                      learning_rate=1e-3, logging_steps=1, report_to="none", use_cpu=True, bf16=False,
                      save_strategy="no", disable_tqdm=True, seed=0, activation_checkpointing=False)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=args, train_dataset=rollout.dataset(),
                          reward_funcs=rollout.reward, rollout_func=rollout)
    trainer.train()
    rollout.close()
    logs = [row for row in trainer.state.log_history if "reward" in row]
    assert len(logs) == 2
    episodes = rollout.last_episodes
    assert len(episodes) == 8 and {t.metadata["task_index"] for t in episodes} == {0, 1}
    # the logged reward is the env's: mean episode return less 0.1 per invalid step, of the last step's episodes
    expected = np.mean([t.outcome - 0.1 * sum(not s.valid for s in t.steps) for t in episodes])
    assert logs[-1]["reward"] == pytest.approx(expected, abs=1e-6)
    # TRL counted only the sampled tokens as completion length (env turns masked)
    sampled = np.mean([sum(len(s.response_ids) for s in t.steps) for t in episodes])
    assert logs[-1]["completions/mean_length"] == pytest.approx(sampled)
    assert any(not torch.equal(before[name], p) for name, p in model.named_parameters())


def test_the_comparison_statistics():
    """experiments/compare_sft_backends.py: Wilson interval and the paired sign test, against hand values."""
    from experiment_scripts import load_experiment

    compare = load_experiment("compare_sft_backends")
    low, high = compare.wilson(34, 64)
    assert (round(100 * low, 1), round(100 * high, 1)) == (41.1, 64.8)
    assert compare.sign_test(0, 0) == 1.0
    assert compare.sign_test(5, 0) == compare.sign_test(0, 5) == pytest.approx(2 / 32)
    assert compare.sign_test(13, 8) == pytest.approx(2 * sum(math.comb(21, i) for i in range(9)) / 2 ** 21)
