"""Reading the action out of a response in the `<think>…</think><action>…</action>` protocol."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ACTION = re.compile(r"<action>(.*?)</action>", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
MAX_ACTION_CHARS = 256


@dataclass(frozen=True)
class ParsedResponse:
    action: str | None  # None when the response broke the protocol
    error: str = ""  # why it broke the protocol, shown to the agent as feedback


def parse_response(text: str, max_action_chars: int = MAX_ACTION_CHARS) -> ParsedResponse:
    """Extract the single action; anything else is reported, never raised.

    Rules: exactly one `<action>` block; an optional `<think>` block before it; the action is one
    line of printable text, whitespace collapsed, at most `max_action_chars` long.
    """
    actions = _ACTION.findall(_THINK.sub("", text))
    if len(actions) != 1:
        found = "no" if not actions else str(len(actions))
        return ParsedResponse(None, f"expected exactly one <action>...</action> block, found {found}")
    action = " ".join(actions[0].split())
    if not action:
        return ParsedResponse(None, "the <action> block is empty")
    if len(action) > max_action_chars:
        return ParsedResponse(None, f"the action is longer than {max_action_chars} characters")
    if not action.isprintable():
        return ParsedResponse(None, "the action holds non-printable characters")
    return ParsedResponse(action)


def format_action(action: str) -> str:
    """The response an agent that needs no thinking gives (experts, random baselines, SFT targets)."""
    return f"<action>{action}</action>"
