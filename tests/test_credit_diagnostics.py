"""Credit diagnostics against hand-computed batches (agent_rl/credit/diagnostics.py)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from agent_rl.credit import make_credit
from agent_rl.credit.diagnostics import DIAGNOSTICS, credit_diagnostics
from agent_rl.data import StepRows


def batch(trajectories: list[tuple[int, float, str]]) -> StepRows:
    """Rows from (group, outcome, anchors as one letter per step) per trajectory; anchors are group-local letters."""
    group, traj, step, anchor, outcome = [], [], [], [], []
    for index, (g, result, letters) in enumerate(trajectories):
        for t, letter in enumerate(letters):
            group.append(g)
            traj.append(index)
            step.append(t)
            anchor.append(ord(letter))
            outcome.append(result)
    n = len(group)
    reward = [result if t == len(letters) - 1 else 0.0 for _, result, letters in trajectories for t in range(len(letters))]
    return StepRows(group=np.array(group), traj=np.array(traj), step=np.array(step), anchor=np.array(anchor),
                    reward=np.array(reward), valid=np.ones(n, bool), outcome=np.array(outcome),
                    truncated=np.zeros(n, bool), action=np.zeros(n, np.int64))


ONE_CONTRAST = batch([(0, 1.0, "ab"), (0, 0.0, "ac")])
REPEATS_NO_CONTRAST = batch([(0, 0.0, "aa"), (1, 1.0, "a"), (1, 1.0, "b")])


@pytest.mark.parametrize(("rows", "advantages", "expected"), [
    # a success and a failure sharing their first state: GRPO-like ±1
    (ONE_CONTRAST, [1, 1, -1, -1], {
        "zero_advantage_fraction": 0.0, "step_group_size": 4 / 3, "shared_state_fraction": 0.5,
        "cross_trajectory_state_fraction": 0.5, "advantage_variance": 1.0, "episode_variance": 1.0, "step_variance": 0.0,
        "step_variance_share": 0.0, "equal_outcome_group_fraction": 0.0, "contrasting_groups": 1, "effective_groups": 1.0}),
    # one trajectory repeats a state (GiGPO groups it with itself); the other group has equal outcomes.
    # Anchor "a" of group 1 is not group 0's "a": buckets stay inside a group.
    (REPEATS_NO_CONTRAST, [0.5, -0.5, 0, 0], {
        "zero_advantage_fraction": 0.5, "step_group_size": 4 / 3, "shared_state_fraction": 0.5,
        "cross_trajectory_state_fraction": 0.0, "advantage_variance": 0.125, "episode_variance": 0.0, "step_variance": 0.125,
        "step_variance_share": 1.0, "equal_outcome_group_fraction": 1.0, "contrasting_groups": 0, "effective_groups": 1.0}),
    # mixed: trajectory means 0.5 and -1 around the row mean -0.25; within-trajectory variance 0.25 on 2 of 3 rows
    # group masses 1 and 2: Kish (1 + 2)² / (1² + 2²) = 1.8
    (dataclasses.replace(ONE_CONTRAST, group=np.array([0, 0, 1, 1])), [1, 0, -1, -1], {
        "zero_advantage_fraction": 0.25, "step_group_size": 1.0, "shared_state_fraction": 0.0,
        "cross_trajectory_state_fraction": 0.0, "advantage_variance": 0.6875, "episode_variance": 0.5625,
        "step_variance": 0.125, "step_variance_share": 0.125 / 0.6875, "equal_outcome_group_fraction": 1.0,
        "contrasting_groups": 0, "effective_groups": 1.8}),
])
def test_diagnostics_by_hand(rows, advantages, expected):
    got = credit_diagnostics(rows, np.array(advantages, dtype=float))
    assert set(got) == set(DIAGNOSTICS)
    assert got == pytest.approx(expected)
    assert got["episode_variance"] + got["step_variance"] == pytest.approx(got["advantage_variance"])


@pytest.mark.parametrize(("masses", "effective"), [([2, 2], 2.0), ([3, 1], 1.6), ([1, 1, 1, 1], 4.0), ([0, 0], 0.0)])
def test_effective_groups_is_kish_over_advantage_mass(masses, effective):
    rows = batch([(g, float(g % 2), "a") for g in range(len(masses))])
    assert credit_diagnostics(rows, np.array(masses, float))["effective_groups"] == pytest.approx(effective)


def test_all_zero_advantages_have_no_step_share():
    got = credit_diagnostics(ONE_CONTRAST, np.zeros(4))
    assert got["zero_advantage_fraction"] == 1.0 and math.isnan(got["step_variance_share"])


def test_grpo_has_no_step_variance_and_gigpo_has_some_on_the_same_rows():
    # two successes reaching the reward at different distances from the shared state "a"
    rows = batch([(0, 1.0, "ab"), (0, 1.0, "acd"), (0, 0.0, "ae")])
    grpo = credit_diagnostics(rows, make_credit("grpo")(rows))
    gigpo = credit_diagnostics(rows, make_credit("gigpo")(rows))
    assert grpo["step_variance"] == pytest.approx(0.0) and gigpo["step_variance"] > 0.01
    assert grpo["cross_trajectory_state_fraction"] == pytest.approx(3 / 7)


def test_empty_batch_and_misaligned_advantages():
    empty = batch([])
    assert all(math.isnan(v) for v in credit_diagnostics(empty, np.zeros(0)).values())
    with pytest.raises(ValueError, match="one per row"):
        credit_diagnostics(ONE_CONTRAST, np.zeros(3))
