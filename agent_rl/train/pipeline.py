"""`agent-rl train` end to end: model -> held-out eval -> SFT warm-start -> RL -> held-out eval.

Every stage leaves its result in the run directory, so a killed run resumes where it stopped:
the tiny model (`base_model/`), the SFT model (`sft_model/`), the evaluations (`eval/*`, resumable
episode by episode) and the RL checkpoints (`checkpoints/iter-*`).
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agent_rl.config import TrainConfig, to_yaml
from agent_rl.data import Trajectory
from agent_rl.env_api import TaskSet, TextEnv, describe_tasks
from agent_rl.eval.harness import evaluate, success_definition
from agent_rl.eval.plots import plot_learning_curve
from agent_rl.eval.tables import EvalProtocol, TableRow, compare_markdown
from agent_rl.io import atomic_directory, atomic_write
from agent_rl.policy.base import Policy
from agent_rl.policy.baselines import ExpertPolicy
from agent_rl.policy.chat import ChatCodec
from agent_rl.policy.factory import make_rollout_policy
from agent_rl.policy.hf import HFPolicy, holds_model, load_model_and_tokenizer
from agent_rl.policy.tiny import build_tiny_model
from agent_rl.registry import make
from agent_rl.rollout.envpool import EnvWorkers, import_modules
from agent_rl.rollout.memory import memory_for
from agent_rl.train.checkpoint import list_checkpoints
from agent_rl.train.distributed import Distributed
from agent_rl.train.metrics import MetricsLog, progress_line
from agent_rl.train.sft import collect_demonstrations, sft_trainer
from agent_rl.train.trainer import RLTrainer

Log = Callable[[str], None]


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def env_factory(config: TrainConfig, split: str, **extra: Any) -> Callable[[], TextEnv]:
    return functools.partial(make, config.env.id, split=split, **{**config.env.kwargs, **extra})


class TrainingRun:
    def __init__(self, config: TrainConfig, log: Log = print) -> None:
        self.config = config
        self.out = Path(config.out_dir)
        self.log = log
        import_modules(config.rollout.worker_modules)  # a user's register() calls, before env ids are looked up
        self.device = resolve_device(config.model.device)
        self.memory = memory_for(config.env)
        self.train_env = env_factory(config, config.env.train_split)
        self.eval_env = env_factory(config, config.env.eval_split)
        # Under `accelerate launch` every rank trains; rank 0 alone builds models, evaluates and writes.
        self.dist = Distributed.from_settings(config.train)
        self.engine: Policy | None = None  # the vLLM rollout policy, started once and synced for each use

    @functools.cached_property
    def train_tasks(self) -> TaskSet:
        return describe_tasks(self.train_env)

    @functools.cached_property
    def eval_tasks(self) -> TaskSet:
        return describe_tasks(self.eval_env)

    def load(self, path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        model_cfg = self.config.model
        lora = model_cfg.lora if not (Path(path) / "adapter_config.json").exists() else None
        return load_model_and_tokenizer(str(path), model_cfg.gguf_file, lora, model_cfg.dtype, self.device)

    # -- stages -----------------------------------------------------------------------------------

    def base_model_path(self) -> Path | str:
        """The configured model, or the tiny model built from the training tasks' expert episodes."""
        if self.config.model.path is not None:
            return self.config.model.path
        path = self.out / "base_model"
        if not (path / "config.json").exists() and self.dist.is_main:
            self.log("building the tiny model: a BPE tokenizer trained on the training tasks' text, random init")
            demos = self.demonstrations(expert=ExpertPolicy(protocol=self.memory.protocol))
            corpus = [self.memory.system_prompt] + [text for t in demos for s in t.steps for text in (s.prompt, s.response)]
            with atomic_directory(path) as tmp:
                build_tiny_model(tmp, corpus, self.config.model.tiny)
        self.dist.barrier()
        return path

    def demonstrations(self, expert: ExpertPolicy) -> list[Trajectory]:
        cfg = self.config
        return collect_demonstrations(
            env_factory(cfg, cfg.env.train_split, expert=True), expert, self.sft_tasks(),
            cfg.sft.episodes_per_task, self.memory, cfg.env.max_turns, cfg.env.id,
        )

    def sft_tasks(self) -> int:
        available = self.train_tasks.size
        requested = self.config.sft.tasks
        if requested is not None and not 1 <= requested <= available:
            raise ValueError(f"sft.tasks must be between 1 and the {available} training tasks, got {requested}")
        return available if requested is None else requested

    def sft(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, metrics: MetricsLog) -> Path:
        cfg = self.config
        demos = self.demonstrations(expert=ExpertPolicy(ChatCodec(tokenizer), self.memory.protocol))
        steps = sum(len(t.steps) for t in demos)
        self.log(f"SFT warm-start ({cfg.sft.backend}): {len(demos)} expert episodes, {steps} steps, "
                 f"{cfg.sft.epochs} epochs")
        metrics.drop_rows_with("sft/")  # an earlier attempt's epochs, when that attempt was killed
        bar = tqdm(total=cfg.sft.epochs, desc="sft", unit="epoch")

        def on_epoch(epoch: int, loss: float) -> None:
            metrics.log(0, {"sft/epoch": epoch + 1, "sft/loss": loss})
            bar.set_postfix(loss=f"{loss:.3f}")
            bar.update()

        train = sft_trainer(cfg.sft.backend, cfg.seed)
        train(model, tokenizer, demos, cfg.sft.epochs, cfg.sft.lr, cfg.sft.batch_rows, cfg.ppo.micro_batch_rows,
              cfg.optim.grad_clip, cfg.optim.weight_decay, on_epoch)
        bar.close()
        path = self.out / "sft_model"
        with atomic_directory(path) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        return path

    def rollout_policy(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> Policy:
        """The configured backend on `model`'s weights: the model itself (hf), or the one vLLM engine, synced."""
        if self.config.policy.backend == "hf":
            return make_rollout_policy(self.config, model, tokenizer)
        if self.engine is None:
            self.engine = make_rollout_policy(self.config, model, tokenizer, self.dist.rank, self.dist.world > 1)
        else:
            self.engine.sync_weights(model)  # type: ignore[attr-defined]
        return self.engine

    def evaluate(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str,
                 policy_label: str) -> list[TableRow]:
        """Rank 0 plays the eval episodes (every rank takes part in a vLLM sync first); others get no rows."""
        cfg = self.config
        if cfg.policy.backend == "hf":
            policy: Policy = HFPolicy(model, tokenizer, cfg.eval.temperature, cfg.rollout.max_new_tokens)
        else:
            policy = self.rollout_policy(model, tokenizer).with_temperature(cfg.eval.temperature)  # type: ignore[attr-defined]
        if not self.dist.is_main:
            self.dist.barrier()
            return []
        tasks = self.eval_tasks
        protocol = EvalProtocol(
            env_id=cfg.env.id, split=cfg.env.eval_split, policy=policy_label, seeds=tuple(cfg.eval.seeds),
            episodes_per_seed=cfg.eval.episodes or tasks.size, catalog_size=tasks.size, max_steps=cfg.env.max_turns,
            success_definition=success_definition(cfg.eval.temperature, tasks.won_means), task_set=tasks.name,
            response_protocol=cfg.env.protocol,
        )
        total = len(protocol.seeds) * protocol.episodes_per_seed
        with tqdm(total=total, desc=f"eval {name}", unit="ep", leave=False) as bar:
            result = evaluate(self.eval_env, policy, protocol, self.memory, self.out / "eval" / name,
                              config=OmegaConf.to_container(OmegaConf.structured(cfg)), progress=bar.update,
                              workers=EnvWorkers.from_rollout(cfg.rollout))
        self.dist.barrier()
        return result.rows

    # -- the whole run ----------------------------------------------------------------------------

    def run(self) -> dict[str, list[TableRow]]:
        cfg = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            with atomic_write(self.out / "config.yaml") as handle:
                handle.write(to_yaml(cfg))
        checkpoints = list_checkpoints(self.out / "checkpoints")
        resuming_from = int(checkpoints[-1].name.split("-")[1]) if checkpoints else None
        log_dir = self.out if self.dist.is_main else self.out / "ranks" / f"rank{self.dist.rank}"
        metrics = MetricsLog(log_dir, resume_from_iteration=resuming_from or 0,
                             log=cfg.log if self.dist.is_main else None,
                             config=OmegaConf.to_container(OmegaConf.structured(cfg)))
        seed_everything(cfg.seed)  # a resumed run then restores the checkpoint's RNG states

        model, tokenizer = self.load(self.base_model_path())
        tables = {}
        if cfg.eval.before:
            tables["before"] = self.evaluate(model, tokenizer, "before", "untrained")
        start = self.base_model_path()
        if cfg.sft.enabled:
            sft_path = self.out / "sft_model"
            if not holds_model(sft_path) and self.dist.is_main:  # a LoRA run saves only its adapter
                self.sft(model, tokenizer, metrics)
            self.dist.barrier()
            start = sft_path
            model, tokenizer = self.load(sft_path)
            tables["after SFT"] = self.evaluate(model, tokenizer, "after_sft", "after SFT")
        ref_model = None
        if cfg.ppo.kl_coef > 0:
            ref_model = self.load(start)[0].eval().requires_grad_(False)
        if checkpoints:
            model, tokenizer = self.load(checkpoints[-1] / "model")
        policy = None if cfg.policy.backend == "hf" else self.rollout_policy(model, tokenizer)
        trainer = RLTrainer(cfg, model, tokenizer, self.train_env, self.train_tasks.size, self.out, ref_model,
                            dist=self.dist, policy=policy)
        if trainer.resume():
            self.log(f"resumed from iteration {trainer.iteration}")
        self.rl_loop(trainer, metrics)
        stage = "SFT + RL" if cfg.sft.enabled else "RL"
        tables["after RL"] = self.evaluate(model, tokenizer, "after_rl", f"after {stage} ({cfg.algo.name})")
        metrics.close()
        if self.dist.is_main:
            self.report(tables)
        return tables

    def rl_loop(self, trainer: RLTrainer, metrics: MetricsLog) -> None:
        cfg = self.config
        bar = tqdm(total=cfg.iterations, initial=trainer.iteration, desc=f"rl {cfg.algo.name}", unit="it")
        started, first = time.perf_counter(), trainer.iteration
        while trainer.iteration < cfg.iterations:
            row = trainer.step()
            if cfg.eval.every and trainer.iteration % cfg.eval.every == 0:
                val = self.evaluate(trainer.model, trainer.tokenizer, f"iter-{trainer.iteration:06d}",
                                    f"iteration {trainer.iteration}")
                row["val/success_rate"] = val[-1].success_mean if val else float("nan")
            metrics.log(trainer.iteration, row)
            if trainer.iteration % cfg.checkpoint_every == 0 or trainer.iteration == cfg.iterations:
                trainer.save()
            bar.set_postfix(success=f"{row['train/success_rate']:.2f}", loss=f"{row['train/loss']:.3f}")
            bar.update()
            per_iteration = (time.perf_counter() - started) / (trainer.iteration - first)
            if self.dist.is_main:
                bar.write(progress_line(trainer.iteration, cfg.iterations, row,
                                        per_iteration * (cfg.iterations - trainer.iteration)))
        bar.close()
        trainer.collector.close()

    def report(self, tables: dict[str, list[TableRow]]) -> None:
        labels = list(tables)
        self.log("\n" + (self.out / "eval" / "after_rl" / "table.md").read_text())
        for earlier in labels[:-1]:
            self.log(f"held-out success, {earlier} vs {labels[-1]}:\n"
                     + compare_markdown(tables[earlier], tables[labels[-1]], (earlier, labels[-1])))
        try:
            png = plot_learning_curve(self.out / "metrics.jsonl", self.out / "learning_curve.png")
            self.log(f"learning curve: {png}")
        except ValueError as err:
            self.log(f"no learning curve: {err}")
