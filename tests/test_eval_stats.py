"""Bootstrap intervals over seeds, checked against resample distributions counted by hand."""

from __future__ import annotations

import pytest

from agent_rl.eval.stats import Interval, bootstrap_ci, paired_difference


@pytest.mark.parametrize(("values", "expected"), [
    ([0.4], Interval(0.4, 0.4, 0.4, 1)),
    ([0.3, 0.3, 0.3], Interval(0.3, 0.3, 0.3, 3)),
    # resample means 0, .5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5 % and 97.5 % points are 0 and 1
    ([0.0, 1.0], Interval(0.5, 0.0, 1.0, 2)),
    # mean = k/3 with k ~ Binomial(3, 1/3): P(k=0) = 8/27 > 2.5 %, P(k=3) = 1/27 > 2.5 %
    ([0.0, 0.0, 1.0], Interval(1 / 3, 0.0, 1.0, 3)),
    # mean = 0.1 k/4, k ~ Binomial(4, 1/4): P(k=0) = 81/256 > 2.5 %; P(k=4) = 1/256, P(k>=3) = 13/256 > 2.5 %
    ([0.0, 0.0, 0.0, 0.1], Interval(0.025, 0.0, 0.075, 4)),
])
def test_exact_bootstrap_by_hand(values, expected):
    assert bootstrap_ci(values) == pytest.approx(expected)


def test_sampled_bootstrap_is_seeded_and_brackets_the_mean():
    values = [0.1 * i for i in range(10)]
    first, again = bootstrap_ci(values), bootstrap_ci(values)
    assert first == again and first.low < first.mean < first.high and first.n == 10


def test_paired_difference_uses_shared_seeds_only():
    method = {0: 0.5, 1: 0.6, 2: 0.9}
    grpo = {0: 0.4, 1: 0.4, 3: 0.0}
    # differences 0.1 and 0.2: resample means 0.1, 0.15, 0.2
    assert paired_difference(method, grpo) == pytest.approx(Interval(0.15, 0.1, 0.2, 2))
    assert paired_difference({5: 1.0}, grpo) is None


@pytest.mark.parametrize(("values", "confidence", "message"), [([], 0.95, "at least one"), ([1.0], 1.0, "confidence")])
def test_bad_input(values, confidence, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(values, confidence)
