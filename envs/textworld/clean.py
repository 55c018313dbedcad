"""Turn the engine's raw output into the observation text an agent reads."""

from __future__ import annotations

import re

from agent_rl.env_api import to_printable

# The TextWorld title banner is drawn with these characters only; no sentence of game text is.
_BANNER_CHARS = frozenset(" _|\\/$<>")
# After each turn the interpreter prints the prompt '>' and, on the same line, a status bar
# ("-= Kitchen =-0/3": room, score and move count). Neither is game text.
_PROMPT_LINE = re.compile(r"^\s*>")
# Asked once a game has ended; our env ends the episode there, so the offer only misleads the agent.
_END_OFFER = "Would you like to RESTART, RESTORE a saved game, QUIT or UNDO the last command?"
_BLANK_RUNS = re.compile(r"\n{3,}")


def clean_feedback(raw: str) -> str:
    """Drop the banner, the prompt and status bar and the end-of-game offer; fold into printable ASCII."""
    kept = []
    for line in raw.splitlines():
        text = line.strip()
        if _PROMPT_LINE.match(text) or text == _END_OFFER:
            continue
        if text and set(text) <= _BANNER_CHARS:
            continue
        kept.append(text)
    return to_printable(_BLANK_RUNS.sub("\n\n", "\n".join(kept)).strip())
