"""Closed intervals [start, end] and the operations on lists of them."""

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Interval:
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"an interval needs start <= end, got [{self.start}, {self.end}]")

    def overlaps(self, other: "Interval") -> bool:
        """Whether the two closed intervals share at least one point."""
        return self.start < other.end and other.start < self.end

    def __len__(self) -> int:
        """How many integers the interval holds."""
        return self.end - self.start + 1


def merge(intervals: list[Interval]) -> list[Interval]:
    """The union of `intervals` as disjoint intervals, sorted by start."""
    merged: list[Interval] = []
    for interval in intervals:
        if merged and merged[-1].overlaps(interval):
            last = merged.pop()
            merged.append(Interval(last.start, max(last.end, interval.end)))
        else:
            merged.append(interval)
    return merged


def total_length(intervals: list[Interval]) -> int:
    """How many integers the union of `intervals` holds."""
    return sum(len(interval) for interval in intervals)
