"""Slugs, word counts and line wrapping."""

import re


def slugify(text: str) -> str:
    """Lower-case `text` and join its runs of letters and digits with single dashes."""
    return re.sub(r"[^a-z0-9]", "-", text.lower())


def count_words(text: str) -> int:
    """How many whitespace-separated words `text` holds."""
    return len(text.split(" "))


def wrap(text: str, width: int) -> list[str]:
    """Break `text` into lines of at most `width` characters, at spaces (a longer word stays whole)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines
