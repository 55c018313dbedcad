"""Why a credit method learns or does not: statistics of one batch's advantages and groups.

Every quantity is a pure function of the batch's `StepRows` and the advantages a method gave them
(one per row), so the same numbers describe every method on the same rollouts. Definitions, with
rows r, trajectories i (n_i rows, N rows in all), episode groups g, anchor groups b = (group, anchor):

- ``zero_advantage_fraction``: share of rows with A_r == 0 exactly (no gradient from them).
- ``step_group_size``: mean size of the anchor groups, N / #b (1.0 = no state ever recurs in a group).
- ``shared_state_fraction``: share of rows whose anchor group has more than one row (the rows GiGPO's
  step term can move; repeats inside one trajectory count, as GiGPO groups them too).
- ``cross_trajectory_state_fraction``: share of rows whose anchor group holds rows of at least two
  trajectories (states that several rollouts reached: the comparisons the papers mean).
- ``advantage_variance``: Var(A) over rows (population), and its law-of-total-variance split
  ``episode_variance`` = Σ_i (n_i/N)(Ā_i − Ā)² (between trajectories: what GRPO can express) plus
  ``step_variance`` = Σ_i (n_i/N)·Var_i(A) (within trajectories: only step-level credit has any);
  ``step_variance_share`` = step / total (0 for GRPO; NaN when every advantage is equal).
- ``equal_outcome_group_fraction``: share of episode groups whose trajectories all have the same outcome.
- ``contrasting_groups``: number of episode groups with at least two different outcomes.
- ``effective_groups``: Kish's effective number of groups that carry signal, (Σ_g m_g)² / Σ_g m_g²
  with m_g = Σ_{r∈g} |A_r|: k groups carrying equal mass give k; one dominating group gives ~1; no
  signal at all gives 0.
"""

from __future__ import annotations

import numpy as np

from agent_rl.credit.stats import (
    combine_codes,
    dense_codes,
    first_per_segment,
    segment_stats,
    zero_advantage_fraction,
)
from agent_rl.data import StepRows

DIAGNOSTICS = (
    "zero_advantage_fraction", "step_group_size", "shared_state_fraction", "cross_trajectory_state_fraction",
    "advantage_variance", "episode_variance", "step_variance", "step_variance_share",
    "equal_outcome_group_fraction", "contrasting_groups", "effective_groups",
)


def credit_diagnostics(rows: StepRows, advantages: np.ndarray) -> dict[str, float]:
    """The `DIAGNOSTICS` of one batch (see the module docstring); every value NaN for an empty batch."""
    advantages = np.asarray(advantages, dtype=np.float64)
    if advantages.shape != (rows.num_rows,):
        raise ValueError(f"advantages have shape {advantages.shape}, expected one per row ({rows.num_rows},)")
    if rows.num_rows == 0:
        return {name: float("nan") for name in DIAGNOSTICS}
    out = {"zero_advantage_fraction": zero_advantage_fraction(advantages)}
    out.update(_state_sharing(rows))
    out.update(_variance_split(rows.traj, advantages))
    out.update(_group_contrast(rows, advantages))
    return out


def _state_sharing(rows: StepRows) -> dict[str, float]:
    buckets, count = dense_codes(combine_codes(rows.group, rows.anchor))
    sizes = np.bincount(buckets, minlength=count)
    # trajectories per bucket: distinct (bucket, trajectory) pairs counted per bucket
    pairs, _ = dense_codes(combine_codes(buckets, rows.traj))
    first, _ = first_per_segment(pairs)
    trajectories = np.bincount(buckets[first], minlength=count)
    return {
        "step_group_size": rows.num_rows / count,
        "shared_state_fraction": float(np.mean(sizes[buckets] > 1)),
        "cross_trajectory_state_fraction": float(np.mean(trajectories[buckets] > 1)),
    }


def _variance_split(traj: np.ndarray, advantages: np.ndarray) -> dict[str, float]:
    within = segment_stats(advantages, traj, unbiased=False)
    total = float(np.mean((advantages - advantages.mean()) ** 2))
    step = float(np.mean(within.std ** 2))  # row-weighted mean of the within-trajectory variances
    episode = float(np.mean((within.mean - advantages.mean()) ** 2))
    return {
        "advantage_variance": total,
        "episode_variance": episode,
        "step_variance": step,
        "step_variance_share": step / total if total > 0 else float("nan"),
    }


def _group_contrast(rows: StepRows, advantages: np.ndarray) -> dict[str, float]:
    groups, count = dense_codes(rows.group)
    outcome = segment_stats(rows.outcome, groups, unbiased=False)
    first, _ = first_per_segment(groups)
    contrasting = outcome.std[first] > 0  # constant segments have an exact 0 std
    mass = np.bincount(groups, weights=np.abs(advantages), minlength=count)
    squares = float(np.sum(mass**2))
    return {
        "equal_outcome_group_fraction": float(np.mean(~contrasting)),
        "contrasting_groups": float(np.count_nonzero(contrasting)),
        "effective_groups": float(mass.sum() ** 2 / squares) if squares > 0 else 0.0,
    }
