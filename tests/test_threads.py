"""torch's thread count: the cores this process may use, capped by train.num_threads or OMP_NUM_THREADS."""

from __future__ import annotations

import pytest

from agent_rl.config import ConfigError, load_config
from agent_rl.train import threads
from agent_rl.train.threads import choose_num_threads


@pytest.mark.parametrize(("cores", "requested", "environ", "expected"), [
    (2, 0, {}, 2),                          # default: every core we may use
    (2, 1, {}, 1),                          # the setting wins
    (2, 8, {}, 2),                          # never more threads than cores
    (4, 0, {"OMP_NUM_THREADS": "1"}, 1),    # the usual environment variable is honoured
    (4, 3, {"OMP_NUM_THREADS": "1"}, 3),    # ... but an explicit setting beats it
    (4, 0, {"OMP_NUM_THREADS": "junk"}, 4),
])
def test_choose_num_threads(monkeypatch, cores: int, requested: int, environ: dict[str, str], expected: int):
    monkeypatch.setattr(threads, "available_cores", lambda: cores)
    assert choose_num_threads(requested, environ) == expected


def test_available_cores_is_the_affinity_mask():
    import os

    assert threads.available_cores() == len(os.sched_getaffinity(0))


def test_negative_num_threads_is_a_config_error():
    with pytest.raises(ConfigError, match="train.num_threads"):
        load_config(overrides=["train.num_threads=-1"])


def test_apply_num_threads_sets_torch(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        assert threads.apply_num_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
