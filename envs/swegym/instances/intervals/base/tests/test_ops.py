import pytest
from intervals import Interval, merge, total_length


def test_interval_rejects_reversed_bounds():
    with pytest.raises(ValueError):
        Interval(3, 1)


def test_length_counts_both_ends():
    assert len(Interval(2, 4)) == 3


def test_overlapping_intervals_overlap():
    assert Interval(1, 5).overlaps(Interval(3, 8))


def test_merge_sorted_overlapping():
    assert merge([Interval(1, 4), Interval(2, 6)]) == [Interval(1, 6)]


def test_total_length_of_disjoint():
    assert total_length([Interval(1, 2), Interval(5, 5)]) == 3
