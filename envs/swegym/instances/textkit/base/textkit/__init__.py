"""Small text helpers."""

from textkit.core import count_words, slugify, wrap

__all__ = ["count_words", "slugify", "wrap"]
