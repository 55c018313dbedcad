"""Decide which action strings may reach the engine.

The Inform interpreter runs whatever line it is given, and some lines do more than one move in the
game: a newline or a full stop or "then" chains several commands into one step, and the
out-of-world verbs restart or quit the game, write save and transcript files into the working
directory, or switch the text mode. TextWorld's state tracker sees none of that, so its facts (and
our anchors, rewards and admissible actions) would drift from the real game. The interpreter itself
(dumb-frotz) reads a backslash as the start of one of its own commands: `\q` made it print "unknown
command" forever, hanging the step (found by experiments/faults.py). Such actions are answered by the env
and never sent.
"""

from __future__ import annotations

import re
import string

MAX_ACTION_LENGTH = 256

_ALLOWED_CHARS = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")
# Inform 7's out-of-world verbs (with their synonyms) that act outside the world model.
_SYSTEM_VERBS = (
    frozenset({"quit", "q", "die", "restart", "restore", "save", "undo"})  # end, restart or save the game
    | frozenset({"script", "transcript", "unscript", "noscript"})  # write a transcript file
    | frozenset({"superbrief", "short", "verbose", "long", "brief", "normal", "notify"})  # text mode
)
# A full stop followed by more text, or the word "then", starts a second command on the same line.
_CHAIN = re.compile(r"\.\s*[^\s.]|\bthen\b", re.IGNORECASE)
# Inform splits words at spaces, commas, full stops and double quotes.
_WORD = re.compile(r"[^\s,.\"]+")


def rejection(action: str) -> str | None:
    """Why `action` must not be sent to the engine, or None when it may be."""
    if len(action) > MAX_ACTION_LENGTH:
        return f"the action is {len(action)} characters long"
    if not action.strip():
        return "the action is empty"
    bad = sorted({ch for ch in action if ch not in _ALLOWED_CHARS})
    if bad:
        shown = ", ".join(ascii(ch) for ch in bad[:5])
        return f"the action holds a newline or another character that is not printable ASCII ({shown})"
    if "\\" in action:
        return "a backslash starts an interpreter command, not an action in the game"
    if _CHAIN.search(action):
        return "a full stop or 'then' chains several commands; send one command per step"
    words = _WORD.findall(action.lower())
    first = words[0] if words else ""
    if first in _SYSTEM_VERBS or first.startswith("tw-"):
        return f"{first!r} is a game-system command, not an action in the game"
    return None


def rejection_feedback(reason: str) -> str:
    """The observation that answers a rejected action: what was wrong and what an action must be."""
    return (
        f"Invalid action: {reason}. Actions are one line of at most {MAX_ACTION_LENGTH} printable ASCII "
        "characters holding one command."
    )
