"""Vectorised segment statistics shared by the group-relative credit methods.

A "segment" is the set of rows sharing an integer code: an episode group, a trajectory, an anchor
bucket (group, anchor), a k-step context bucket (HGPO), a graph node (SALT). Codes need not be
dense or sorted; everything here is `np.unique` + `np.bincount` work, never a loop over rows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from agent_rl.credit.base import check_choice

SINGLETON_POLICIES = ("zero", "raw")  # what a segment of one member gets; see `normalize_in_segments`


def combine_codes(*codes: np.ndarray) -> np.ndarray:
    """One int64 code per distinct tuple of codes, e.g. `combine_codes(group, anchor)` = anchor buckets.

    Anchor codes in `StepRows` are batch-global, so buckets that must stay inside an episode group
    combine the anchor with the group code.
    """
    stacked = np.stack([np.asarray(c, dtype=np.int64) for c in codes], axis=1)
    return np.unique(stacked, axis=0, return_inverse=True)[1].reshape(-1)


def first_per_segment(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """De-duplicate to one row per segment: (index of each segment's first row, row -> segment position).

    `values[first][inverse]` broadcasts one-per-segment values back to every row. Used to compute
    group statistics over one score per trajectory rather than per step row (credit.md §2: step
    rows over-weight long trajectories).
    """
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


class SegmentStats(NamedTuple):
    """Per-row statistics of the row's segment."""

    mean: np.ndarray
    std: np.ndarray  # NaN for a one-member segment when unbiased (as torch.std); 0 when population
    count: np.ndarray  # int64 segment size


def segment_stats(values: np.ndarray, codes: np.ndarray, *, unbiased: bool) -> SegmentStats:
    """Mean, std (unbiased = Bessel-corrected, else population) and size of each row's segment.

    A segment whose values are all equal gets exactly that value as its mean and exactly 0 as its
    std, so centred values there are exact zeros (sum-then-divide misses by an ulp: 3 × 0.1 / 3).
    """
    values = np.asarray(values, dtype=np.float64)
    _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    k = counts.shape[0]
    mean = np.bincount(inverse, weights=values, minlength=k) / np.maximum(counts, 1)
    low = np.full(k, np.inf)
    high = np.full(k, -np.inf)
    np.minimum.at(low, inverse, values)
    np.maximum.at(high, inverse, values)
    constant = low == high
    mean[constant] = low[constant]
    deviation = values - mean[inverse]
    squares = np.bincount(inverse, weights=deviation * deviation, minlength=k)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 -> NaN for unbiased singletons, on purpose
        std = np.sqrt(squares / (counts - (1 if unbiased else 0)))
    return SegmentStats(mean=mean[inverse], std=std[inverse], count=counts[inverse])


def normalize_in_segments(
    values: np.ndarray, codes: np.ndarray, *, by_std: bool, unbiased: bool, eps: float, singleton: str
) -> np.ndarray:
    """Group-relative values: (x − mean_seg) / (std_seg + eps) if `by_std`, else x − mean_seg.

    `singleton` says what a one-member segment gets, since it has no peers to compare with:
    "zero" → 0 (nothing to learn from it); "raw" → x itself (verl's GRPO sets mean 0, std 1 for a
    singleton, so its advantage is the raw score). Constant segments give exact zeros.
    """
    check_choice("singleton", singleton, SINGLETON_POLICIES)
    values = np.asarray(values, dtype=np.float64)
    stats = segment_stats(values, codes, unbiased=unbiased)
    centered = values - stats.mean
    out = centered / (stats.std + eps) if by_std else centered
    alone = stats.count == 1
    out[alone] = values[alone] if singleton == "raw" else 0.0
    return out


def zero_advantage_fraction(advantages: np.ndarray) -> float:
    """Fraction of rows whose advantage is exactly 0 (no learning signal); 0.0 for an empty batch."""
    advantages = np.asarray(advantages)
    return float(np.count_nonzero(advantages == 0) / advantages.size) if advantages.size else 0.0
