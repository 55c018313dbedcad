"""Confidence intervals over seeds: the percentile bootstrap of a mean, and of a paired difference.

With few seeds (the usual case: 3-6) the bootstrap is computed exactly, over all n^n resamples with
replacement, so the interval is a deterministic function of the values and can be checked by hand;
above `EXACT_UP_TO` values it draws `resamples` of them with a fixed seed. Percentiles use the
inverted empirical CDF (numpy's "inverted_cdf"): the bounds are always attainable resample means.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

EXACT_UP_TO = 6  # 6^6 = 46,656 resamples


class Interval(NamedTuple):
    mean: float
    low: float
    high: float
    n: int


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, resamples: int = 20_000,
                 seed: int = 0) -> Interval:
    """The mean of `values` and its percentile-bootstrap interval at `confidence`."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    n = data.size
    if n <= EXACT_UP_TO:
        index = np.array(list(itertools.product(range(n), repeat=n)))
    else:
        index = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    means = data[index].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail], method="inverted_cdf")
    return Interval(float(data.mean()), float(low), float(high), n)


def paired_difference(method: Mapping[int, float], baseline: Mapping[int, float],
                      confidence: float = 0.95) -> Interval | None:
    """Mean over the seeds both ran of (method − baseline), with its bootstrap interval; None if none shared."""
    seeds = sorted(set(method) & set(baseline))
    if not seeds:
        return None
    return bootstrap_ci([method[s] - baseline[s] for s in seeds], confidence)
