"""Train on any agent-rl env with TRL's `GRPOTrainer`, through its multi-turn hook `rollout_func`.

    from trl import GRPOConfig, GRPOTrainer
    from agent_rl.integrations.trl import EnvRollout

    rollout = EnvRollout("textworld/demo-v0", max_turns=4, max_new_tokens=24)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=GRPOConfig(...),
                          train_dataset=rollout.dataset(), reward_funcs=rollout.reward, rollout_func=rollout)
    trainer.train()

TRL gives `rollout_func` a batch of prompts (each task `num_generations` times) and wants, per prompt,
one token sequence: `prompt_ids`, `completion_ids` and the sampling `logprobs`, with `env_mask` marking
the completion tokens the model sampled (1) apart from those the env wrote (0, never trained). An
agent-rl episode is several turns, so the rollout plays them with the project's collector (env pool,
parsing, validity, restarts) and a `TranscriptPolicy`: each turn's prompt is the episode's token
transcript so far plus the env's next turn, so the whole episode is one sequence whose sampled ids are
exactly the ids TRL trains. The reward is the episode's outcome, from the real env.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agent_rl.credit.returns import invalid_penalty
from agent_rl.data import Trajectory
from agent_rl.env_api import describe_tasks
from agent_rl.policy.base import PolicyOutput, PolicyRequest
from agent_rl.policy.hf import HFPolicy
from agent_rl.registry import make
from agent_rl.rollout.collector import Collector, EpisodeSpec
from agent_rl.rollout.memory import HistoryMemory


class TranscriptPolicy(HFPolicy):
    """An HFPolicy that keeps each episode in context token for token.

    Turn 0 is the memory's prompt; turn t > 0 is the previous prompt ids + the ids sampled then (closed
    with EOS if the model stopped at `max_new_tokens`) + the env's next user turn (`ChatCodec.encode_next_turn`).
    So every prompt extends the last one and an episode is one sequence, as TRL trains it.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, temperature: float = 1.0,
                 max_new_tokens: int = 64) -> None:
        super().__init__(model, tokenizer, temperature, max_new_tokens)
        self.transcripts: dict[str, tuple[int, list[int]]] = {}  # episode -> (turns taken, ids so far)

    def act(self, requests: list[PolicyRequest]) -> list[PolicyOutput]:
        prompts = [self._prompt(request) for request in requests]
        outputs = self.generate(prompts)
        for request, output in zip(requests, outputs, strict=True):
            self.transcripts[request.episode] = (request.turn + 1, output.prompt_ids + output.token_ids)
        return outputs

    def _prompt(self, request: PolicyRequest) -> tuple[str, list[int]]:
        if not request.episode:
            raise ValueError("TranscriptPolicy needs PolicyRequest.episode (the collector sets it)")
        if request.turn == 0:
            return self.codec.encode_prompt(request.messages, request.info.get("tools"))
        turns, ids = self.transcripts.get(request.episode, (0, []))
        if turns != request.turn:
            raise ValueError(f"episode {request.episode!r} asks for turn {request.turn} but its transcript has "
                             f"{turns} turns (forked episodes cannot continue a transcript)")
        eos = self.codec.tokenizer.eos_token_id
        closed = ids if ids[-1] == eos else [*ids, eos]
        ids = closed + self.codec.encode_next_turn(request.messages[-1])
        return "", ids

    def forget(self) -> None:
        """Drop every transcript (after their episodes were turned into sequences)."""
        self.transcripts.clear()


@dataclass
class EpisodeSequence:
    """One episode as TRL wants it: the first prompt, then everything after it, with its masks."""

    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]  # 1 on tokens the policy sampled, 0 on tokens the env / chat template wrote
    logprobs: list[float]  # the sampling log-probs on sampled tokens, 0.0 on the others


def episode_sequence(trajectory: Trajectory) -> EpisodeSequence:
    """Lay a transcript-policy episode out as one sequence; every step's ids are checked to be a prefix of the
    next step's, so what TRL trains is exactly what was sampled, in the context it was sampled in."""
    steps = trajectory.steps
    if not steps:
        raise ValueError(f"episode {trajectory.traj_id} has no step (env error: "
                         f"{trajectory.metadata.get('env_error', 'none')})")
    prompt = steps[0].prompt_ids
    sequence = list(steps[-1].prompt_ids) + list(steps[-1].response_ids)
    mask = [0] * len(sequence)
    logprobs = [0.0] * len(sequence)
    for step in steps:
        start, end = len(step.prompt_ids), len(step.prompt_ids) + len(step.response_ids)
        if sequence[:end] != list(step.prompt_ids) + list(step.response_ids):
            raise ValueError(f"episode {trajectory.traj_id}: step prompts do not extend each other; play it "
                             "with TranscriptPolicy")
        mask[start:end] = [1] * (end - start)
        logprobs[start:end] = step.logprobs or [0.0] * (end - start)
    cut = len(prompt)
    return EpisodeSequence(list(prompt), sequence[cut:], mask[cut:], logprobs[cut:])


def _check_sampling(args: Any) -> None:
    """The rollout samples from the whole tempered distribution, the one its log-probs are of: a truncating
    setting of the trainer would be silently ignored, so it is an error."""
    ignored = {name: getattr(args, name, default) for name, default in
               (("top_p", 1.0), ("top_k", 0), ("min_p", None), ("repetition_penalty", 1.0))}
    if ignored["top_p"] != 1.0 or ignored["top_k"] not in (0, None) or ignored["min_p"] is not None \
            or ignored["repetition_penalty"] != 1.0:
        raise ValueError(f"EnvRollout samples at GRPOConfig.temperature only; set top_p=1.0, top_k=0, min_p=None, "
                         f"repetition_penalty=1.0 (got {ignored})")


@dataclass
class EnvRollout:
    """TRL `rollout_func` (call it with TRL's prompts and the trainer) and reward function for one agent-rl env.

    `dataset()` is the train_dataset: one prompt per task of the split, a key this rollout maps back to its
    task. Each call plays every prompt's task once (TRL repeats a prompt `num_generations` times: that is
    the group), all copies of a task from the same seed (the trainer's step), at the trainer's sampling
    temperature, `max_new_tokens` per turn, at most `max_turns` turns.
    """

    env_id: str
    split: str = "train"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    max_turns: int = 8
    max_new_tokens: int = 64
    # the transcript holds the history, so the env's turn need only show the task and the current state
    memory: HistoryMemory = field(default_factory=lambda: HistoryMemory(window=0))
    invalid_penalty_coef: float = 0.0  # subtracted from the reward per invalid step (seed papers: 0.1)
    last_episodes: list[Trajectory] = field(default_factory=list, init=False)  # the last call's, for logging

    def __post_init__(self) -> None:
        self.make_env = functools.partial(make, self.env_id, split=self.split, **self.env_kwargs)
        self._collector: Collector | None = None

    def prompt_of(self, task_index: int) -> str:
        return f"agent-rl {self.env_id} {self.split} task {task_index}"

    def dataset(self, num_tasks: int | None = None):  # -> datasets.Dataset
        """The first `num_tasks` tasks of the split (all by default), one row each: `prompt`, `task_index`."""
        from datasets import Dataset

        available = describe_tasks(self.make_env).size
        count = available if num_tasks is None else num_tasks
        if not 1 <= count <= available:
            raise ValueError(f"num_tasks must be between 1 and the {available} tasks of {self.env_id} "
                             f"({self.split}), got {num_tasks}")
        return Dataset.from_dict({"prompt": [self.prompt_of(i) for i in range(count)],
                                  "task_index": list(range(count))})

    def _task_of(self, prompt: Any) -> int:
        head, _, index = str(prompt).rpartition(" task ")
        if head != f"agent-rl {self.env_id} {self.split}" or not index.isdigit():
            raise ValueError(f"prompt {str(prompt)[:80]!r} is not a task of this rollout; build the "
                             "train_dataset with EnvRollout.dataset()")
        return int(index)

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list]:
        _check_sampling(trainer.args)
        model = trainer.accelerator.unwrap_model(trainer.model)
        if self._collector is None:  # the env pool is kept across calls (building an env can load a game)
            policy = TranscriptPolicy(model, trainer.processing_class, trainer.args.temperature, self.max_new_tokens)
            self._collector = Collector(self.make_env, policy, self.memory, self.max_turns, env_id=self.env_id)
        collector = self._collector
        policy: TranscriptPolicy = collector.policy  # type: ignore[assignment]
        policy.model, policy.temperature = model, trainer.args.temperature
        step = int(trainer.state.global_step)
        specs = [EpisodeSpec(self._task_of(prompt), step, f"trl/s{step}/t{self._task_of(prompt)}",
                             f"trl/s{step}/e{i}") for i, prompt in enumerate(prompts)]
        try:
            self.last_episodes = collector.run(specs)
            sequences = [episode_sequence(t) for t in self.last_episodes]
        finally:
            policy.forget()
        return {
            "prompt_ids": [s.prompt_ids for s in sequences],
            "completion_ids": [s.completion_ids for s in sequences],
            "logprobs": [s.logprobs for s in sequences],
            "env_mask": [s.env_mask for s in sequences],
            # the rest reaches the reward functions as keyword arguments
            "episode_reward": [self.episode_reward(t) for t in self.last_episodes],
            "episode_success": [float(t.success) for t in self.last_episodes],
            "episode_turns": [len(t.steps) for t in self.last_episodes],
        }

    def episode_reward(self, trajectory: Trajectory) -> float:
        """The env's episode return, less `invalid_penalty_coef` per invalid step."""
        valid = np.array([step.valid for step in trajectory.steps], dtype=bool)
        return float(trajectory.outcome - invalid_penalty(valid, self.invalid_penalty_coef).sum())

    def reward(self, prompts: list[Any], completions: list[Any], episode_reward: list[float],
               **_: Any) -> list[float]:
        """TRL reward function: the episode rewards this rollout computed from the env."""
        return list(episode_reward)

    def close(self) -> None:
        if self._collector is not None:
            self._collector.close()
            self._collector = None
