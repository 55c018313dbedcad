"""Shared fixtures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from agent_rl.envs.textworld.suites import SPLITS, SUITES, TEST_SEED_OFFSET, Suite


@dataclass(frozen=True)
class GeneratedSuite:
    """A TextWorld suite whose games are already generated into `cache_dir`."""

    suite: Suite
    cache_dir: Path


@pytest.fixture(scope="session")
def textworld_suite(tmp_path_factory: pytest.TempPathFactory) -> GeneratedSuite:
    """A tiny demo-like TextWorld suite (2 train + 2 test games, one per quest length), generated once."""
    pytest.importorskip("textworld")
    from agent_rl.envs.textworld.games import suite_tasks

    demo = SUITES["demo"]
    suite = Suite(
        name="tiny",
        generator=demo.generator,
        variants=demo.variants,
        train_seeds=(0, 1),
        test_seeds=(TEST_SEED_OFFSET, TEST_SEED_OFFSET + 1),
        description="tiny test suite",
    )
    cache_dir = tmp_path_factory.mktemp("agent_rl_cache")
    for split in SPLITS:
        suite_tasks(suite, split, cache_dir)
    return GeneratedSuite(suite, cache_dir)


# --- Tiny model, policies and TextWorld helpers (rollout, policy, train and CLI tests) -------------

TINY_ROOMS = ("kitchen", "pantry", "bedroom", "garden", "cellar", "attic", "bathroom", "study", "garage", "hallway")
TINY_OBJECTS = ("red apple", "rusty key", "old book", "silver coin", "blue potion", "wooden spoon", "green lamp",
                "paper map", "brass lantern", "yellow cheese", "sharp knife", "golden ring")
TINY_CONTAINERS = ("chest", "box", "cupboard", "fridge", "drawer", "basket", "crate", "safe")
TINY_SUPPORTS = ("table", "shelf", "counter", "bed", "desk", "stand")
TINY_DIRECTIONS = ("north", "south", "east", "west")


def textworld_like_corpus() -> list[str]:
    """Text shaped like TextWorld observations, tasks and `<action>` responses (deterministic)."""
    from agent_rl.rollout.memory import DEFAULT_SYSTEM_PROMPT

    lines = [DEFAULT_SYSTEM_PROMPT]
    for i, room in enumerate(TINY_ROOMS):
        for j, thing in enumerate(TINY_OBJECTS):
            box = TINY_CONTAINERS[(i + j) % len(TINY_CONTAINERS)]
            support = TINY_SUPPORTS[(i * 3 + j) % len(TINY_SUPPORTS)]
            way = TINY_DIRECTIONS[(i + 2 * j) % len(TINY_DIRECTIONS)]
            lines += [
                (f"-= {room.title()} =- You are in a {room}. You see a closed {box} and a {support}. "
                 f"On the {support} you make out a {thing}. There is an exit to the {way}."),
                f"Your task is to take the {thing} from the {support} and put it into the {box}.",
                f"Admissible actions: take {thing} from {support} | open {box} | go {way} | examine {thing} | look",
                f"<think>The {thing} is on the {support}.</think><action>take {thing} from {support}</action>",
                f"<action>insert {thing} into {box}</action>",
                f"<action>open {box}</action>",
                f"<action>go {way}</action>",
                f"You take the {thing} from the {support}. You open the {box}. Your score has just gone up by one point.",
            ]
    return lines


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama-architecture model (hidden 64, 2 layers, ~600 tokens) built from local text, once."""
    import torch

    from agent_rl.config import TinyModelConfig
    from agent_rl.policy.tiny import build_tiny_model

    # One intra-op thread: faster for a model this small, and the test machines share their two cores
    # with other jobs (two spinning OpenMP threads on a busy core made forward/backward ~30x slower).
    torch.set_num_threads(1)
    config = TinyModelConfig(vocab_size=600, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128)
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), textworld_like_corpus(), config)


@pytest.fixture
def tiny_model(tiny_model_dir: Path):
    """A fresh (model, tokenizer) pair loaded from `tiny_model_dir`: tests may train it freely."""
    from agent_rl.policy.hf import load_model_and_tokenizer

    return load_model_and_tokenizer(str(tiny_model_dir))


@pytest.fixture
def tiny_policy(tiny_model):
    """HFPolicy on a fresh tiny model: sampling at temperature 1, at most 8 new tokens."""
    from agent_rl.policy.hf import HFPolicy

    model, tokenizer = tiny_model
    return HFPolicy(model, tokenizer, temperature=1.0, max_new_tokens=8)


@pytest.fixture
def textworld_env_factory(textworld_suite: GeneratedSuite):
    """`factory(split="test", **kwargs)` builds a TextWorldEnv on the generated tiny suite."""
    from agent_rl.envs.textworld.env import TextWorldEnv

    def factory(split: str = "test", **kwargs):
        return TextWorldEnv(suite=textworld_suite.suite, split=split, cache_dir=textworld_suite.cache_dir, **kwargs)

    return factory


@pytest.fixture
def tiny_suite_name(textworld_suite: GeneratedSuite, monkeypatch: pytest.MonkeyPatch) -> str:
    """Registers the tiny suite under a name for this test, so string-only paths (CLI `--env-arg`,
    YAML configs) can select it: `suite=<name>` with `cache_dir=textworld_suite.cache_dir`."""
    monkeypatch.setitem(SUITES, textworld_suite.suite.name, textworld_suite.suite)
    return textworld_suite.suite.name


@pytest.fixture(scope="session")
def tiny_run(tiny_model_dir: Path, textworld_suite: GeneratedSuite, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real finished run directory: the tiny model, SFT, 2 GRPO iterations, three evaluations (seconds)."""
    from tiny_runs import tiny_run_config

    from agent_rl.train.pipeline import TrainingRun

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SUITES, textworld_suite.suite.name, textworld_suite.suite)
        TrainingRun(tiny_run_config(out, tiny_model_dir, textworld_suite.suite.name, textworld_suite.cache_dir),
                    log=lambda line: None).run()
    return out
