"""The RL loop: collect grouped rollouts -> credit assignment -> PPO update, with exact checkpoints."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agent_rl.config import TrainConfig
from agent_rl.credit import make_credit
from agent_rl.credit.diagnostics import DIAGNOSTICS, credit_diagnostics
from agent_rl.data import Step, StepRows, Trajectory
from agent_rl.env_api import TextEnv
from agent_rl.io import write_trajectories
from agent_rl.policy.base import Policy, SyncedPolicy
from agent_rl.policy.factory import make_rollout_policy
from agent_rl.policy.vllm import max_logprob_gap
from agent_rl.rollout.collector import Collector
from agent_rl.rollout.envpool import EnvWorkers
from agent_rl.rollout.memory import memory_for
from agent_rl.rollout.sampler import TaskSampler
from agent_rl.train.checkpoint import TrainerState, list_checkpoints, load_checkpoint, save_checkpoint
from agent_rl.train.distributed import Distributed
from agent_rl.train.losses import batch_response_logprobs, response_logprobs
from agent_rl.train.rows import TokenRows, build_token_rows, steps_of
from agent_rl.train.update import TokenLoss, make_ppo_loss, minibatches, optimizer_step


def make_optimizer(model: PreTrainedModel, lr: float, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]  # LoRA leaves the base frozen
    return torch.optim.AdamW(params, lr=lr, betas=tuple(config.optim.betas), weight_decay=config.optim.weight_decay)


def episode_metrics(trajectories: list[Trajectory], prefix: str) -> dict[str, float]:
    if not trajectories:  # e.g. every env of the iteration crashed
        names = ("success_rate", "mean_outcome", "avg_turns", "invalid_rate", "truncated_rate")
        return {f"{prefix}/{name}": float("nan") for name in names}
    steps = sum(len(t.steps) for t in trajectories)
    return {
        f"{prefix}/success_rate": float(np.mean([t.success for t in trajectories])),
        f"{prefix}/mean_outcome": float(np.mean([t.outcome for t in trajectories])),
        f"{prefix}/avg_turns": steps / len(trajectories),
        f"{prefix}/invalid_rate": sum(t.num_invalid for t in trajectories) / max(steps, 1),
        f"{prefix}/truncated_rate": float(np.mean([t.truncated for t in trajectories])),
    }


def mean_entropy(steps: list[Step]) -> float:
    """Mean rollout-time entropy over the sampled tokens of `steps`; NaN when the policy reported none."""
    values = [value for step in steps if step.entropy for value in step.entropy]
    return float(np.mean(values)) if values else float("nan")


class RLTrainer:
    """One object per run: owns the policy, the collector, the credit assigner and the optimizer."""

    def __init__(
        self,
        config: TrainConfig,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        make_env: Callable[[], TextEnv],
        num_tasks: int,
        out_dir: Path,
        ref_model: PreTrainedModel | None = None,
        dist: Distributed | None = None,
        policy: Policy | None = None,
    ) -> None:
        """`dist`: the ranks of an `accelerate launch` (default: from `config.train`, one plain process
        when not launched); `policy`: the rollout policy (default: the one `policy.backend` names)."""
        self.config = config
        self.model = model  # the transformers model itself; `train_model` is its engine-wrapped view
        self.tokenizer = tokenizer
        self.ref_model = ref_model
        self.out_dir = out_dir
        self.dist = dist or Distributed.from_settings(config.train)
        if self.dist.shards_parameters and config.policy.backend == "hf":
            raise ValueError("FSDP / ZeRO-3 shard the model across ranks, which transformers generate cannot "
                             "sample from: set policy.backend=vllm, or launch with DDP / ZeRO-2")
        if config.train.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.train_model, self.optimizer = self.dist.prepare(model, make_optimizer(model, config.optim.lr, config))
        self.policy = policy or make_rollout_policy(config, model, tokenizer, self.dist.rank, self.dist.world > 1)
        memory = memory_for(config.env)
        self.collector = Collector(make_env, self.policy, memory, config.env.max_turns, env_id=config.env.id,
                                   workers=EnvWorkers.from_rollout(config.rollout))
        self.sampler = TaskSampler(num_tasks, config.seed)
        self.iteration = 0
        if config.ppo.kl_coef > 0 and ref_model is None:
            raise ValueError("ppo.kl_coef > 0 needs a reference model")
        self.credit = make_credit(config.algo.name, **config.algo.params)
        self.credit.bind(self)  # last: a method may read the model, optimizer and config

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def resume(self) -> bool:
        """Continue from the newest checkpoint, if any (the weights were loaded from it by the caller)."""
        checkpoints = list_checkpoints(self.checkpoint_dir)
        if not checkpoints:
            return False
        state = load_checkpoint(checkpoints[-1], self.optimizer)
        self.sampler.load_state_dict(state.sampler)
        self.credit.load_state_dict(state.method)
        self.iteration = state.iteration
        return True

    def save(self) -> Path:
        """Rank 0 writes the checkpoint (every rank takes part in gathering sharded weights first)."""
        state = TrainerState(iteration=self.iteration, sampler=self.sampler.state_dict(),
                             method=self.credit.state_dict())
        weights = self.dist.state_dict(self.train_model)
        path = self.checkpoint_dir / f"iter-{self.iteration:06d}"
        if self.dist.is_main:
            path = save_checkpoint(self.checkpoint_dir, state, self.model, self.tokenizer, self.optimizer,
                                   keep=self.config.keep_checkpoints, state_dict=weights)
        self.dist.barrier()
        return path

    def step(self) -> dict[str, Any]:
        """One iteration; returns its metrics (train/*, time/*)."""
        config = self.config
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        tasks = self.sampler.sample(config.rollout.tasks_per_iteration)
        prefix = f"it{self.iteration + 1}"
        groups = self.credit.collect(tasks, config.rollout.group_size, prefix)
        if groups is None:
            groups = self._collect(tasks, prefix)
        groups = self.credit.prepare(groups, self.iteration)
        trajectories = [t for g in groups for t in g.trajectories]
        if isinstance(self.policy, SyncedPolicy):
            self.policy.release_memory()
        timings["time/rollout"] = time.perf_counter() - clock

        # An env that crashed says nothing about the agent: its trajectory is kept on disk (marked in
        # metadata["env_error"]) but neither trained on nor counted in the episode metrics. Its group
        # is credited over the remaining trajectories (a lone survivor gets the singleton advantage).
        trained = [t for t in trajectories if "env_error" not in t.metadata]
        steps = steps_of(trained)

        clock = time.perf_counter()
        step_rows = self.credit.annotate(trained, StepRows.from_trajectories(trained)) if steps else None
        advantages = self.credit(step_rows) if step_rows is not None else np.zeros(0)
        timings["time/credit"] = time.perf_counter() - clock
        for step, advantage in zip(steps, advantages, strict=True):
            step.advantage = float(advantage)  # kept in the iteration's trajectory file, for `agent-rl view`

        rows = build_token_rows(steps, advantages, self.tokenizer.pad_token_id) if steps else None
        clock = time.perf_counter()
        mismatch = self._logprobs(rows) if rows is not None else 0.0
        timings["time/logprobs"] = time.perf_counter() - clock

        clock = time.perf_counter()
        update: dict[str, float] = {}
        if rows is not None:  # nothing to train when every env crashed
            update = self.credit.update(rows, step_rows)
            if update is None:
                update = self.ppo_update(rows, self.credit.make_loss(config.ppo) or make_ppo_loss(config.ppo))
            update = {**update, **self.credit.after_update(trained, step_rows, rows)}
        timings["time/update"] = time.perf_counter() - clock

        sync: dict[str, float] = {}
        if isinstance(self.policy, SyncedPolicy):
            clock = time.perf_counter()
            sync = self._sync_rollout_weights(rows)
            timings["time/weight_sync"] = time.perf_counter() - clock

        self.iteration += 1
        # Written whole, not appended: a run killed before this iteration's checkpoint redoes the
        # iteration on resume and rewrites the file instead of appending the episodes a second time.
        if self.dist.is_main:
            write_trajectories(self.out_dir / "trajectories" / f"iter-{self.iteration:06d}.jsonl", trajectories,
                               append=False)
        return {
            **sync,
            **episode_metrics(trained, "train"),
            **{f"train/{k}": v for k, v in update.items()},
            "train/rows": len(steps),
            "train/turns": sum(len(t.steps) for t in trajectories),  # agent-env turns spent, crashed envs included
            "train/env_errors": len(trajectories) - len(trained),
            # why the method learns or not: zero rows, shared states, episode vs step variance (credit/diagnostics)
            **{f"train/{name}": value for name, value in (
                credit_diagnostics(step_rows, advantages) if step_rows is not None
                else dict.fromkeys(DIAGNOSTICS, float("nan"))).items()},
            "train/advantage_abs_mean": float(np.abs(advantages).mean()) if steps else float("nan"),
            "train/logprob_mismatch": mismatch,
            "train/entropy": mean_entropy(steps),
            **timings,
            "time/iteration": sum(timings.values()),
        }

    def _collect(self, tasks: list[tuple[int, int]], prefix: str) -> list:
        """The iteration's groups; on several ranks each plays its share of the tasks and all get every group."""
        if self.dist.world == 1:
            return self.collector.collect_groups(tasks, self.config.rollout.group_size, prefix=prefix)
        mine = self.collector.collect_groups(self.dist.shard(tasks), self.config.rollout.group_size,
                                             prefix=f"{prefix}/rank{self.dist.rank}")
        return self.dist.gather(mine)

    def _sync_rollout_weights(self, rows: TokenRows | None) -> dict[str, float]:
        """Push the updated weights to the rollout engine; with `check_sync`, the largest |engine − trainer|
        log-prob on the first micro-batch's tokens (temperature 1), scored by the engine after the sync."""
        assert isinstance(self.policy, SyncedPolicy)
        self.policy.sync_weights(self.model)
        if rows is None or not self.config.policy.vllm.check_sync:
            return {}
        sample = rows.select(range(min(self.config.ppo.micro_batch_rows, rows.num_rows)))
        prompts, responses = sample.sequences()
        engine = self.policy.score(prompts, responses)
        trainer = batch_response_logprobs(self.train_model, sample, sample.num_rows)
        return {"train/sync_logprob_gap": max_logprob_gap(engine, trainer, sample.response_mask)}

    @torch.no_grad()
    def _logprobs(self, rows: TokenRows) -> float:
        """The log-prob phase before the update: reference log-probs, and the rollout/trainer mismatch.

        With `ppo.kl_coef > 0` the frozen reference model's log-probs of every row are computed here,
        once, and stored in `rows.ref_logprobs` for the update (they do not change across PPO epochs).

        Returns the largest |trainer log-prob - rollout log-prob| over the sampled tokens of the FIRST
        micro-batch only: a cheap sample (one forward pass, not one per row) of a check whose value is
        numerical noise under token-in/token-out; a large value means the rollout and the trainer
        disagree on the tokens or the distribution (the re-tokenization drift peers hit).
        """
        step = self.config.ppo.micro_batch_rows
        temperature = self.policy.logprob_temperature
        was_training = self.model.training
        self.model.eval()  # as the rollout sampled (HFPolicy.act), no dropout
        try:
            sample = rows.select(range(min(step, rows.num_rows)))
            logp = response_logprobs(self.model, sample, temperature)
            mismatch = float(((logp - sample.old_logprobs).abs() * sample.response_mask).max())
        finally:
            self.model.train(was_training)
        if self.ref_model is not None and self.config.ppo.kl_coef > 0:
            ref = torch.zeros_like(rows.old_logprobs)
            for start in range(0, rows.num_rows, step):
                index = range(start, min(start + step, rows.num_rows))
                micro = rows.select(index)
                micro_ref = response_logprobs(self.ref_model, micro, temperature)
                ref[start:index.stop, ref.shape[1] - micro_ref.shape[1]:] = micro_ref
            rows.ref_logprobs = ref
        return mismatch

    def ppo_update(self, rows: TokenRows, loss_fn: TokenLoss, epochs: int | None = None) -> dict[str, float]:
        """`ppo.epochs` passes (or `epochs`) of shuffled mini-batch optimizer steps; the mean of their stats."""
        config = self.config
        self.model.train()
        history: list[dict[str, float]] = []
        for _ in range(config.ppo.epochs if epochs is None else epochs):
            for index in minibatches(rows.num_rows, config.ppo.mini_batch_rows):
                # every rank steps on the same rows: rank 0's shuffle (the ranks' RNGs drew differently)
                history.append(self.optimizer_step(rows.select(self.dist.broadcast(index)), loss_fn))
        return {name: float(np.mean([h[name] for h in history])) for name in history[0]}

    def optimizer_step(self, rows: TokenRows, loss_fn: TokenLoss) -> dict[str, float]:
        """One optimizer step of the policy on `rows` (micro-batched as configured)."""
        return optimizer_step(self.train_model, self.optimizer, rows, self.config.ppo.micro_batch_rows, loss_fn,
                              self.config.optim.grad_clip, self.policy.logprob_temperature, self.dist)
