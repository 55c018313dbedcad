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
