"""Closed integer intervals."""

from intervals.ops import Interval, merge, total_length

__all__ = ["Interval", "merge", "total_length"]
