"""Training: token rows and their masks, PPO / KL losses by hand, micro-batching, SFT, checkpoints and exact resume."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_runs import tiny_run_config

from agent_rl.config import (
    AlgoConfig,
    EnvConfig,
    PPOConfig,
    RolloutConfig,
    SFTConfig,
    TrainConfig,
)
from agent_rl.data import Step, Trajectory
from agent_rl.env_api import TextEnv
from agent_rl.io import read_jsonl, read_trajectories
from agent_rl.policy.base import PolicyOutput, PolicyRequest
from agent_rl.policy.baselines import ExpertPolicy
from agent_rl.policy.chat import ChatCodec
from agent_rl.rollout.collector import Collector, EpisodeSpec
from agent_rl.rollout.memory import HistoryMemory
from agent_rl.train.checkpoint import TrainerState, list_checkpoints, load_checkpoint, save_checkpoint
from agent_rl.train.losses import low_var_kl, ppo_clip_loss, response_logprobs
from agent_rl.train.pipeline import TrainingRun
from agent_rl.train.rows import build_token_rows, steps_of
from agent_rl.train.sft import collect_demonstrations, sft_train
from agent_rl.train.trainer import RLTrainer
from agent_rl.train.update import make_ppo_loss, minibatches, optimizer_step, sft_loss


def id_step(prompt_ids: list[int], response_ids: list[int], logprobs: list[float] | None = None) -> Step:
    return Step(obs="", anchor="", prompt="", response="", action=None, reward=0.0, valid=True,
                prompt_ids=prompt_ids, response_ids=response_ids, logprobs=logprobs or [])


# --- token rows and masks ---------------------------------------------------------------------------

# prompt / response lengths 3+2, 1+4, 5+1: width = max(5, 5, 6) = 6, R = max(2, 4, 1) = 4
MASK_STEPS = [
    id_step([11, 12, 13], [21, 22], [-0.1, -0.2]),
    id_step([31], [41, 42, 43, 44], [-1.0, -2.0, -3.0, -4.0]),
    id_step([51, 52, 53, 54, 55], [61], [-0.5]),
]


def test_token_rows_lay_out_prompt_and_response_ids_exactly():
    rows = build_token_rows(MASK_STEPS, np.array([1.0, -1.0, 0.5]), pad_id=0)
    assert rows.input_ids.tolist() == [[0, 11, 12, 13, 21, 22], [0, 31, 41, 42, 43, 44], [51, 52, 53, 54, 55, 61]]
    assert rows.attention_mask.tolist() == [[0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    assert rows.response_mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]]
    assert torch.equal(rows.old_logprobs, torch.tensor([[0, 0, -0.1, -0.2], [-1, -2, -3, -4], [0, 0, 0, -0.5]]))
    assert rows.advantages.tolist() == [1.0, -1.0, 0.5]
    # positions skip the left padding, as batched generation numbered them
    assert rows.position_ids.tolist() == [[0, 0, 1, 2, 3, 4], [0, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]]


def test_response_mask_covers_exactly_the_response_ids():
    rows = build_token_rows(MASK_STEPS, np.zeros(3), pad_id=0)
    responses = rows.response_mask.shape[1]
    tail = rows.input_ids[:, -responses:]
    for row, step in enumerate(MASK_STEPS):
        mask = rows.response_mask[row].bool()
        assert tail[row][mask].tolist() == step.response_ids
        assert rows.old_logprobs[row][mask].tolist() == pytest.approx(step.logprobs)
        assert rows.old_logprobs[row][~mask].abs().sum() == 0
        trained = set(tail[row][mask].tolist())
        assert not trained & set(step.prompt_ids) and 0 not in trained  # prompt and padding never trained


@pytest.mark.parametrize(
    "index, input_ids, response_mask",
    [
        ([0], [[11, 12, 13, 21, 22]], [[1, 1]]),  # width 5, R 2: the padding column is dropped
        ([2, 0], [[51, 52, 53, 54, 55, 61], [0, 11, 12, 13, 21, 22]], [[0, 1], [1, 1]]),
        ([1], [[31, 41, 42, 43, 44]], [[1, 1, 1, 1]]),
    ],
)
def test_select_drops_only_unneeded_padding(index: list[int], input_ids: list[list[int]],
                                            response_mask: list[list[int]]):
    rows = build_token_rows(MASK_STEPS, np.array([1.0, 2.0, 3.0]), pad_id=0).select(index)
    assert rows.input_ids.tolist() == input_ids
    assert rows.response_mask.tolist() == response_mask
    assert rows.advantages.tolist() == [[1.0, 2.0, 3.0][i] for i in index]
    assert rows.old_logprobs.shape == rows.response_mask.shape


def test_build_token_rows_rejects_mismatched_or_tokenless_input():
    with pytest.raises(ValueError, match="3 steps but 2 advantages"):
        build_token_rows(MASK_STEPS, np.zeros(2), pad_id=0)
    with pytest.raises(ValueError, match="carry no token ids"):
        build_token_rows([MASK_STEPS[0], id_step([1], [])], np.zeros(2), pad_id=0)


def test_masks_align_on_real_expert_steps(tiny_model, textworld_env_factory):
    _, tokenizer = tiny_model
    collector = Collector(lambda: textworld_env_factory("train", expert=True), ExpertPolicy(ChatCodec(tokenizer)),
                          HistoryMemory(), max_turns=6)
    trajectories = collector.run([EpisodeSpec(0, 0, "g", "a"), EpisodeSpec(1, 0, "g", "b")])
    collector.close()
    steps = steps_of(trajectories)
    assert len({len(s.prompt_ids) for s in steps}) > 1 and len({len(s.response_ids) for s in steps}) > 1
    rows = build_token_rows(steps, np.zeros(len(steps)), tokenizer.pad_token_id)
    responses = rows.response_mask.shape[1]
    for row, step in enumerate(steps):
        mask = rows.response_mask[row].bool()
        masked = rows.input_ids[row, -responses:][mask].tolist()
        assert masked == step.response_ids
        assert tokenizer.decode(masked, skip_special_tokens=True) == step.response
        real = rows.input_ids[row][rows.attention_mask[row].bool()].tolist()
        assert real == step.prompt_ids + step.response_ids  # padding only on the left, nothing re-tokenized


# --- losses by hand ----------------------------------------------------------------------------------

# clip 0.2 both sides, dual-clip c = 3. Per token: loss = max(-A·r, -A·clip(r, 0.8, 1.2)), then for A < 0
# min(loss, -A·c). "clipped" = the clipped branch is the larger one (gradient cut), as clip_fraction counts.
PPO_CASES = [
    # A, ratio, loss, d loss / d logprob, clipped
    (1.0, 1.1, -1.1, -1.1, False),  # inside the range: -A·r, gradient -A·r
    (1.0, 1.5, -1.2, 0.0, True),  # max(-1.5, -1.2) = -1.2: clipped above, no gradient
    (1.0, 0.5, -0.5, -0.5, False),  # max(-0.5, -0.8) = -0.5: a positive advantage is never clipped below
    (-1.0, 0.5, 0.8, 0.0, True),  # max(0.5, 0.8) = 0.8: clipped below
    (-1.0, 1.5, 1.5, 1.5, False),  # max(1.5, 1.2) = 1.5 < 3: not bounded
    (-1.0, 5.0, 3.0, 0.0, False),  # max(5, 1.2) = 5 -> dual-clip min(5, 1·3) = 3
    (-2.0, 4.0, 6.0, 0.0, False),  # max(8, 2.4) = 8 -> dual-clip min(8, 2·3) = 6
    (2.0, 5.0, -2.4, 0.0, True),  # max(-10, -2.4) = -2.4: no dual-clip for A > 0
    (0.0, 3.0, 0.0, 0.0, False),  # zero advantage: zero loss
]


@pytest.mark.parametrize("advantage, ratio, loss, grad, clipped", PPO_CASES)
def test_ppo_clip_loss_by_hand(advantage: float, ratio: float, loss: float, grad: float, clipped: bool):
    logprobs = torch.tensor([[math.log(ratio)]], dtype=torch.float64, requires_grad=True)
    terms = ppo_clip_loss(logprobs, torch.zeros(1, 1, dtype=torch.float64), torch.tensor([advantage]),
                          torch.ones(1, 1, dtype=torch.float64), clip_low=0.2, clip_high=0.2, dual_clip=3.0)
    assert float(terms.loss_sum.detach()) == pytest.approx(loss, abs=1e-9)
    terms.loss_sum.backward()
    assert float(logprobs.grad) == pytest.approx(grad, abs=1e-9)
    assert terms.clip_fraction == (1.0 if clipped else 0.0)
    assert terms.approx_kl == pytest.approx(-math.log(ratio))


def ppo_batch(mask: list[float]) -> tuple[torch.Tensor, ...]:
    advantages = torch.tensor([case[0] for case in PPO_CASES], dtype=torch.float64)
    logprobs = torch.tensor([[math.log(case[1])] for case in PPO_CASES], dtype=torch.float64)
    return logprobs, torch.zeros_like(logprobs), advantages, torch.tensor(mask, dtype=torch.float64)[:, None]


def test_ppo_clip_loss_sums_masked_tokens_and_counts_clip_fraction():
    terms = ppo_clip_loss(*ppo_batch([1.0] * 9))
    # -1.1 - 1.2 - 0.5 + 0.8 + 1.5 + 3 + 6 - 2.4 + 0 = 6.1; clipped rows 2, 4, 8 -> 3/9
    assert float(terms.loss_sum) == pytest.approx(6.1)
    assert terms.clip_fraction == pytest.approx(3 / 9)
    # masking out row 2 (loss -1.2, clipped): 6.1 + 1.2 = 7.3 over 8 tokens, 2 of them clipped
    masked = ppo_clip_loss(*ppo_batch([1.0, 0.0] + [1.0] * 7))
    assert float(masked.loss_sum) == pytest.approx(7.3)
    assert masked.clip_fraction == pytest.approx(2 / 8)


def test_ppo_advantage_broadcasts_over_the_row_tokens_and_kl_estimate():
    logprobs = torch.tensor([[0.1, -0.3, 5.0], [0.0, 0.2, -0.2]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    terms = ppo_clip_loss(logprobs, torch.zeros(2, 3), torch.tensor([2.0, -1.0]), mask)
    # row 0 (A=2): r = e^0.1 = 1.10517 -> -2·1.10517 = -2.21034; r = e^-0.3 = 0.74082 -> -2·0.74082 = -1.48164
    # row 1 (A=-1): r = e^0.2 = 1.22140 -> max(1.22140, 1.2) = 1.22140; r = e^-0.2 = 0.81873 -> max(0.81873, 0.8)
    # total -2.21034 - 1.48164 + 1.22140 + 0.81873 = -1.65185; the masked 5.0 token is ignored
    assert float(terms.loss_sum) == pytest.approx(-1.65185, abs=1e-4)
    assert terms.clip_fraction == 0.0
    assert terms.approx_kl == pytest.approx((-0.1 + 0.3 - 0.2 + 0.2) / 4)  # mean of old - new over 4 tokens


@pytest.mark.parametrize(
    "dual_clip, clip_high, advantage, ratio, loss",
    [
        (None, 0.2, -1.0, 5.0, 5.0),  # no dual-clip: max(5, 1.2) = 5 stays
        (3.0, 0.28, 1.0, 1.5, -1.28),  # clip-higher: max(-1.5, -1.28)
        (3.0, 0.28, -1.0, 0.5, 0.8),  # the low side keeps 0.2: max(0.5, 0.8)
        (10.0, 0.2, -1.0, 5.0, 5.0),  # dual-clip bound 10 > 5: inactive
    ],
)
def test_ppo_clip_options(dual_clip: float | None, clip_high: float, advantage: float, ratio: float, loss: float):
    terms = ppo_clip_loss(torch.tensor([[math.log(ratio)]]), torch.zeros(1, 1), torch.tensor([advantage]),
                          torch.ones(1, 1), clip_low=0.2, clip_high=clip_high, dual_clip=dual_clip)
    assert float(terms.loss_sum) == pytest.approx(loss, abs=1e-5)


@pytest.mark.parametrize(
    "logprob, ref, expected",
    [
        (0.0, 0.0, 0.0),  # r = 0: e^0 - 0 - 1
        (0.0, math.log(2), 0.306853),  # r = ln 2: 2 - 0.693147 - 1
        (0.0, -math.log(2), 0.193147),  # r = -ln 2: 0.5 + 0.693147 - 1
        (-1.0, -2.0, 0.367879),  # r = -1: e^-1 + 1 - 1
        (-3.0, -1.0, 4.389056),  # r = 2: e^2 - 2 - 1 = 7.389056 - 3
        (0.0, 25.0, 10.0),  # r clamped to 20: e^20 - 21 ~ 4.9e8, clamped to 10
        (0.0, -25.0, 10.0),  # r clamped to -20: e^-20 + 20 - 1 ~ 19, clamped to 10
    ],
)
def test_low_var_kl_by_hand(logprob: float, ref: float, expected: float):
    assert float(low_var_kl(torch.tensor(logprob), torch.tensor(ref))) == pytest.approx(expected, abs=1e-5)


def test_low_var_kl_is_non_negative():
    generator = torch.Generator().manual_seed(0)
    logprobs, ref = -5 * torch.rand(2, 1000, generator=generator, dtype=torch.float64)
    assert (low_var_kl(logprobs, ref) >= 0).all()
    assert (low_var_kl(logprobs, logprobs) == 0).all()


# --- optimizer steps ------------------------------------------------------------------------------


def random_rows(vocab: int, pad_id: int, seed: int = 0):
    """Rows with prompts and responses of different lengths, old log-probs off by noise, mixed advantages."""
    rng = np.random.default_rng(seed)
    shapes = [(7, 3), (2, 5), (12, 1), (4, 4), (9, 2)]
    steps = [id_step(rng.integers(10, vocab, p).tolist(), rng.integers(10, vocab, r).tolist(),
                     (np.log(1 / vocab) + rng.normal(0, 0.3, r)).tolist()) for p, r in shapes]
    return build_token_rows(steps, np.array([1.0, -0.5, 2.0, -1.5, 0.3]), pad_id)


@pytest.mark.parametrize("loss_name", ["ppo", "sft"])
def test_micro_batches_give_the_gradient_of_one_big_batch(tiny_model, loss_name: str):
    model, tokenizer = tiny_model
    rows = random_rows(len(tokenizer), tokenizer.pad_token_id)
    loss_fn = make_ppo_loss(PPOConfig()) if loss_name == "ppo" else sft_loss
    results = []
    for micro in (5, 2, 1):
        copy_ = copy.deepcopy(model)
        optimizer = torch.optim.SGD(copy_.parameters(), lr=0.0)  # keeps the gradients, moves nothing
        stats = optimizer_step(copy_, optimizer, rows, micro, loss_fn, grad_clip=1e9)
        results.append((stats, {n: p.grad.clone() for n, p in copy_.named_parameters()}))
    (big_stats, big_grads), *others = results
    assert big_stats["loss"] != 0.0 and big_stats["grad_norm"] > 0
    for stats, grads in others:
        assert stats.keys() == big_stats.keys()
        for key in stats:
            assert stats[key] == pytest.approx(big_stats[key], rel=1e-4, abs=1e-6), key
        for name, grad in grads.items():
            assert torch.allclose(grad, big_grads[name], rtol=1e-4, atol=1e-7), name


def test_optimizer_step_clips_the_gradient_norm(tiny_model):
    model, tokenizer = tiny_model
    rows = random_rows(len(tokenizer), tokenizer.pad_token_id)
    stats = optimizer_step(model, torch.optim.SGD(model.parameters(), lr=0.0), rows, 5, sft_loss, grad_clip=1e-3)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert stats["grad_norm"] > 1e-3  # the reported norm is the one before clipping
    assert float(norm) == pytest.approx(1e-3, rel=1e-3)


def test_minibatches_partition_the_rows():
    batches = minibatches(10, 4, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))


# --- SFT -------------------------------------------------------------------------------------------


def test_sft_on_expert_demonstrations_lowers_the_loss(tiny_model, textworld_env_factory):
    model, tokenizer = tiny_model
    demos = collect_demonstrations(lambda: textworld_env_factory("train", expert=True),
                                   ExpertPolicy(ChatCodec(tokenizer)), num_tasks=2, episodes_per_task=1,
                                   memory=HistoryMemory(), max_turns=6, env_id="textworld/demo-v0")
    assert len(demos) == 2 and all(t.success for t in demos)
    torch.manual_seed(0)
    epochs: list[tuple[int, float]] = []
    losses = sft_train(model, tokenizer, demos, epochs=8, lr=1e-2, batch_rows=8, micro_batch_rows=2, grad_clip=1.0,
                       weight_decay=0.0, on_epoch=lambda epoch, loss: epochs.append((epoch, loss)))
    assert [e for e, _ in epochs] == list(range(8)) and [loss for _, loss in epochs] == losses
    assert losses[-1] < 0.7 * losses[0], losses
    # the model now gives the demonstrated tokens more probability than it did
    rows = build_token_rows(steps_of(demos), np.zeros(len(steps_of(demos))), tokenizer.pad_token_id)
    with torch.no_grad():
        nll = -(response_logprobs(model, rows) * rows.response_mask).sum() / rows.response_mask.sum()
    assert float(nll) < losses[0]


def test_sft_without_demonstrations_is_an_error(tiny_model):
    model, tokenizer = tiny_model
    with pytest.raises(ValueError, match="no successful expert demonstrations"):
        sft_train(model, tokenizer, [Trajectory("t", "g", "r")], 1, 1e-3, 4, 2, 1.0, 0.0)


# --- what the trainer trains on ----------------------------------------------------------------------


class OneStepEnv(TextEnv):
    """"win" wins at once, anything else is a no-op; `crash` makes every step raise (a dead env server)."""

    def __init__(self, crash: bool = False) -> None:
        super().__init__()
        self.crash = crash

    @property
    def num_tasks(self) -> int:
        return 2

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self.task = self.task_index(options)
        return "start", self._info(won=False)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.crash:
            raise RuntimeError("env server died")
        won = action == "win"
        return "done" if won else "nothing happens", float(won), won, False, self._info(won)

    def _info(self, won: bool) -> dict[str, Any]:
        return {"admissible_actions": ["win", "wait"], "anchor": f"{self.task}:{won}", "won": won,
                "task_type": "one-step", "task_id": f"one/{self.task}", "task": "win"}


class ForcedText:
    """Keeps the HF policy's token ids and log-probs but plays `text` (so the untrained model's turns parse)."""

    def __init__(self, inner: Any, text: str) -> None:
        self.inner = inner
        self.text = text

    def act(self, requests: list[PolicyRequest]) -> list[PolicyOutput]:
        return [dataclasses.replace(o, text=self.text) for o in self.inner.act(requests)]


def test_steps_of_crashed_envs_are_not_trained(tiny_model, tmp_path: Path):
    model, tokenizer = tiny_model
    built: list[OneStepEnv] = []

    def make_env() -> OneStepEnv:
        built.append(OneStepEnv(crash=len(built) == 1))  # the env of episode slot 1 is dead
        return built[-1]

    config = TrainConfig(env=EnvConfig(id="test/one-step-v0", max_turns=2),
                         rollout=RolloutConfig(tasks_per_iteration=2, group_size=2, max_new_tokens=4),
                         algo=AlgoConfig(name="grpo"), ppo=PPOConfig(mini_batch_rows=8, micro_batch_rows=8))
    trainer = RLTrainer(config, model, tokenizer, make_env, num_tasks=2, out_dir=tmp_path)
    trainer.collector.policy = ForcedText(trainer.policy, "<action>win</action>")
    metrics = trainer.step()
    trajectories = read_trajectories(tmp_path / "trajectories" / "iter-000001.jsonl")
    assert len(built) == 5  # four slots, and one replacement for the dead env
    healthy = [t for t in trajectories if "env_error" not in t.metadata]
    assert all(t.success for t in healthy)
    assert metrics["train/rows"] == sum(len(t.steps) for t in healthy)
    assert metrics["train/success_rate"] == 1.0


# --- checkpoints ---------------------------------------------------------------------------------


def test_list_checkpoints_ignores_half_written_and_foreign_entries(tmp_path: Path):
    for name in ("iter-000001", "iter-000003", ".iter-000004.tmp", "iter-12", "iter-000002.old", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "iter-000005").write_text("a file, not a checkpoint")
    assert list_checkpoints(tmp_path) == [tmp_path / "iter-000001", tmp_path / "iter-000003"]
    assert list_checkpoints(tmp_path / "missing") == []


def test_checkpoint_round_trip_restores_optimizer_rng_and_state(tiny_model, tmp_path: Path):
    model, tokenizer = tiny_model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rows = random_rows(len(tokenizer), tokenizer.pad_token_id)
    optimizer_step(model, optimizer, rows, 5, sft_loss, 1.0)
    paths = [save_checkpoint(tmp_path, TrainerState(i, {"k": i}), model, tokenizer, optimizer, keep=2)
             for i in (1, 2, 3)]
    assert list_checkpoints(tmp_path) == paths[1:]  # keep=2 removed the oldest
    expected_draw = torch.rand(3)  # drawn right after the last save
    torch.manual_seed(12345)
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    state = load_checkpoint(paths[-1], fresh)
    assert state == TrainerState(3, {"k": 3})
    assert torch.equal(torch.rand(3), expected_draw)
    saved = optimizer.state_dict()["state"]
    for key, value in fresh.state_dict()["state"].items():
        assert torch.equal(value["exp_avg"], saved[key]["exp_avg"])
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


# --- exact resume of a killed run -----------------------------------------------------------------


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even `except Exception` handlers."""


@dataclass
class ResumeRuns:
    straight: Path  # 2 iterations without interruption
    resumed: Path  # killed while saving iteration 2, then restarted from the iteration-1 checkpoint
    config: TrainConfig


@pytest.fixture(scope="module")
def resume_runs(tiny_model_dir: Path, textworld_suite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResumeRuns]:
    from agent_rl.envs.textworld.suites import SUITES

    root = tmp_path_factory.mktemp("resume")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SUITES, textworld_suite.suite.name, textworld_suite.suite)
        configs = [tiny_run_config(root / name, tiny_model_dir, textworld_suite.suite.name, textworld_suite.cache_dir)
                   for name in ("straight", "resumed")]
        TrainingRun(configs[0], log=lambda line: None).run()

        original_save = RLTrainer.save

        def save_then_die(self: RLTrainer) -> Path:
            if self.iteration == 2:  # killed mid-save: a half-written temporary directory, no checkpoint
                (self.checkpoint_dir / ".iter-000002.tmp" / "model").mkdir(parents=True)
                raise Killed()
            return original_save(self)

        patch.setattr(RLTrainer, "save", save_then_die)
        with pytest.raises(Killed):
            TrainingRun(configs[1], log=lambda line: None).run()
        patch.setattr(RLTrainer, "save", original_save)
        assert [p.name for p in list_checkpoints(root / "resumed" / "checkpoints")] == ["iter-000001"]
        TrainingRun(configs[1], log=lambda line: None).run()  # a fresh start: new objects, all from disk
        yield ResumeRuns(root / "straight", root / "resumed", configs[1])


def rl_rows(run: Path) -> dict[int, dict]:
    rows = [r for r in read_jsonl(run / "metrics.jsonl") if r["iteration"] > 0]
    by_iteration = {r["iteration"]: r for r in rows}
    assert len(by_iteration) == len(rows), "an iteration was logged twice"
    return by_iteration


@pytest.mark.slow
def test_resumed_run_repeats_the_uninterrupted_iteration_exactly(resume_runs: ResumeRuns):
    straight, resumed = rl_rows(resume_runs.straight), rl_rows(resume_runs.resumed)
    assert sorted(straight) == sorted(resumed) == [1, 2]
    assert straight[2]["train/loss"] != 0.0 and straight[2]["train/rows"] > 0  # the iteration did train
    for iteration in (1, 2):
        same = {k: v for k, v in straight[iteration].items() if not k.startswith("time/")}
        assert {k: resumed[iteration][k] for k in same} == same
    for key in ("train/success_rate", "train/loss", "train/rows"):
        assert resumed[2][key] == straight[2][key]


@pytest.mark.slow
def test_resumed_run_ends_with_identical_weights_and_optimizer(resume_runs: ResumeRuns):
    final = [run / "checkpoints" / "iter-000002" for run in (resume_runs.straight, resume_runs.resumed)]
    weights = [load_file(str(path / "model" / "model.safetensors")) for path in final]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    base = load_file(str(Path(resume_runs.config.model.path) / "model.safetensors"))
    assert any(not torch.equal(base[n], weights[0][n]) for n in base if n in weights[0])  # training moved them
    optimizers = [torch.load(path / "optimizer.pt", weights_only=False)["state"] for path in final]
    for key, state in optimizers[0].items():
        assert torch.equal(state["exp_avg_sq"], optimizers[1][key]["exp_avg_sq"])
    states = [json.loads((path / "state.json").read_text()) for path in final]
    assert states[0] == states[1] and states[0]["iteration"] == 2


@pytest.mark.slow
def test_resumed_run_cleans_up_and_evaluates_the_same(resume_runs: ResumeRuns):
    checkpoints = resume_runs.resumed / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] and not list(checkpoints.glob(".*.tmp"))
    assert [p.name for p in list_checkpoints(checkpoints)] == ["iter-000001", "iter-000002"]
    tables = [(run / "eval" / "after_rl" / "table.csv").read_text() for run in (resume_runs.straight,
                                                                                 resume_runs.resumed)]
    assert tables[0] == tables[1]


@pytest.mark.slow
def test_resumed_run_does_not_duplicate_the_redone_iteration_trajectories(resume_runs: ResumeRuns):
    config = resume_runs.config
    per_iteration = config.rollout.tasks_per_iteration * config.rollout.group_size
    for iteration in (1, 2):
        path = resume_runs.resumed / "trajectories" / f"iter-{iteration:06d}.jsonl"
        trajectories = read_trajectories(path)
        assert len(trajectories) == per_iteration
        assert len({t.traj_id for t in trajectories}) == per_iteration


# --- the SFT stage of the pipeline ---------------------------------------------------------------


def _tiny_suite_config(suite: str, cache_dir: Path, out: Path, sft_tasks: int | None) -> TrainConfig:
    return TrainConfig(env=EnvConfig(id="textworld/demo-v0", kwargs={"suite": suite, "cache_dir": str(cache_dir)},
                                     max_turns=3),
                       sft=SFTConfig(tasks=sft_tasks), out_dir=str(out))


@pytest.mark.parametrize("sft_tasks, imitated", [(1, ["tiny/train/0000"]), (None, ["tiny/train/0000", "tiny/train/0001"])])
def test_sft_tasks_limits_the_imitated_training_tasks(tiny_suite_name, textworld_suite, tmp_path: Path,
                                                       sft_tasks: int | None, imitated: list[str]):
    config = _tiny_suite_config(tiny_suite_name, textworld_suite.cache_dir, tmp_path, sft_tasks)
    demos = TrainingRun(config, log=lambda _: None).demonstrations(ExpertPolicy())
    assert sorted(t.task_id for t in demos) == imitated


def test_sft_tasks_outside_the_training_split_is_an_error(tiny_suite_name, textworld_suite, tmp_path: Path):
    config = _tiny_suite_config(tiny_suite_name, textworld_suite.cache_dir, tmp_path, 3)
    with pytest.raises(ValueError, match="sft.tasks must be between 1 and the 2 training tasks"):
        TrainingRun(config, log=lambda _: None).sft_tasks()
    with pytest.raises(ValueError, match="sft.tasks must be > 0, got 0"):  # refused by the config itself
        _tiny_suite_config(tiny_suite_name, textworld_suite.cache_dir, tmp_path, 0)
