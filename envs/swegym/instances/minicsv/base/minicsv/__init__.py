"""A small CSV reader."""

from minicsv.reader import parse_line, read_records

__all__ = ["parse_line", "read_records"]
