"""Response protocols: what the system prompt asks the model to write, and how its reply becomes an action.

- `tags` (the seed papers'): `<think>…</think><action>…</action>`, parsed strictly (exactly one
  `<action>` block); for models that are trained to it.
- `action-only`: "reply with the action only", for small instruct models that follow it zero-shot
  (SmolLM2-135M-Instruct never writes an `<action>` block unprompted, but does write a bare command).
  Its parser accepts what such models actually produce around a command (a code fence, quotes,
  `Action:` labels, a list marker, a preamble line, a trailing sentence) and still rejects a reply
  that is no command: empty, a sentence that starts with its subject or a symbol ("You are in…",
  "I think…", an echo of the observation), longer than a command, an unclosed `<think>`. An `<action>` block, when a reply has one, is read with the `tags` rules.

`protocol_of(name)` looks one up; `env.protocol` (config) and `agent-rl eval --protocol` select it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from agent_rl.env_api import ActionSyntax
from agent_rl.rollout.parsing import ONE_LINE, ParsedResponse, check_action, format_action, parse_response

TAGS_INSTRUCTION = (
    "You are an agent playing a text game. Think step by step inside <think> </think>, "
    "then give exactly one action inside <action> </action>."
)
ACTION_ONLY_INSTRUCTION = (
    "You are an agent in a text environment. Reply with your next action only: one command, "
    "written exactly as the task asks (one of the admissible actions when they are listed), "
    "and nothing else."
)

# A one-line command longer than this, unless it is a tagged or bracketed action (`<search>…</search>`,
# `search[…]`), is a sentence about the game, not a command (TextWorld and ALFWorld commands are <= 8 words).
MAX_COMMAND_WORDS = 16
_LABEL = re.compile(r"^(?:\*\*)?(?:my\s+|next\s+|final\s+)?(?:action|command)(?:\*\*)?\s*[:=-]\s*(?:\*\*)?\s*",
                    re.IGNORECASE)
_LIST_MARKER = re.compile(r"^(?:[-*>]\s+|\d+[.)]\s+)")
_TAGGED = re.compile(r"^<(\w+)>.*?</\1>")  # `<search>q</search>` and the like: the action ends at its tag
_BRACKETED = re.compile(r"^\w+\[[^\]\n]*\]")  # `search[q]`, `click[Buy Now]`
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|$)", re.DOTALL)
_QUOTES = ('"', "'", "`", "**", "*")
# Commands are imperatives that start with a verb ("take", "go", "search[", "<answer>"); a reply that starts
# with the subject of a sentence describes the game instead ("You are in a kitchen", "I think I should").
_PROSE_STARTS = frozenset({"i", "you", "your", "we", "it", "its", "the", "this", "there", "that", "my", "let",
                           "to", "in", "as", "since", "here", "sure", "okay", "ok", "a", "an"})


@dataclass(frozen=True)
class Example:
    """One solved turn shown to the model before the real one (rendered by the memory, as a chat exchange)."""

    task: str
    observation: str
    admissible: tuple[str, ...]
    action: str


@dataclass(frozen=True)
class ResponseProtocol:
    """A system prompt and the parser and formatter that go with it."""

    name: str
    instruction: str  # the default system prompt
    parse: Callable[[str, ActionSyntax], ParsedResponse]
    format: Callable[[str], str]  # the response that carries `action` (experts, random players, SFT targets)
    example: Example | None = None  # a one-shot exchange before the turn: what a 135M model needs to answer at all
    closing: str = ""  # the last line of every user turn, right where the model starts writing


# Measured on SmolLM2-135M-Instruct, greedy, 8 textworld/demo-v0 test games: with the instruction alone it wrote
# an admissible command for 0 of them (it retells the observation); with this exchange before the turn, 7.
ACTION_ONLY_EXAMPLE = Example(
    task="Put the red apple into the box.",
    observation="You are in a kitchen. There is a closed box here.",
    admissible=("examine box", "open box", "look"),
    action="open box",
)


def parse_action_only(text: str, syntax: ActionSyntax = ONE_LINE) -> ParsedResponse:
    """The command in a reply that should be just the command (see the module docstring for the rules)."""
    if "<action>" in text:
        return parse_response(text, syntax)
    if "<think>" in text:
        if "</think>" not in text:
            return ParsedResponse(None, "the <think> block is not closed")
        text = text[text.rindex("</think>") + len("</think>"):]
    fence = _FENCE.search(text)
    if fence is not None:
        text = fence.group(1)
    if syntax.multiline:
        return check_action("\n".join(line.rstrip() for line in text.strip("\n").splitlines()), syntax)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    while len(lines) > 1 and lines[0].endswith(":") and not _LABEL.sub("", lines[0]):
        lines.pop(0)  # a bare label line ("Action:") before the command
    while len(lines) > 1 and lines[0].endswith(":"):
        lines.pop(0)  # a preamble ("Here is my next action:")
    if not lines:
        return ParsedResponse(None, "the response is empty; reply with the action only")
    return _one_command(lines[0], syntax)


def _one_command(line: str, syntax: ActionSyntax) -> ParsedResponse:
    line = _LIST_MARKER.sub("", _LABEL.sub("", line)).strip()
    tagged = _TAGGED.match(line) or _BRACKETED.match(line)
    if tagged is not None:
        return check_action(tagged.group(0), syntax)
    end = _SENTENCE_END.search(line)
    if end is not None:
        line = line[:end.start()]  # "open the door. Then I will ..." -> "open the door"
    line = _unquote(line.strip())
    words = line.split()
    first = re.split(r"[^a-z]", words[0].lower())[0] if words else ""  # "You're," -> "you"
    if words and (not line[0].isalnum() or first in _PROSE_STARTS):
        return ParsedResponse(None, f"expected a command, got prose ({' '.join(words[:4])} ...); "
                                    "reply with the action only")
    if len(words) > MAX_COMMAND_WORDS:
        return ParsedResponse(None, f"expected one command, got a sentence of {len(words)} words; "
                                    "reply with the action only")
    return check_action(" ".join(line.split()), syntax)


def _unquote(text: str) -> str:
    changed = True
    while changed:
        changed = False
        for quote in _QUOTES:
            if len(text) > 2 * len(quote) and text.startswith(quote) and text.endswith(quote):
                text, changed = text[len(quote):-len(quote)].strip(), True
    return text


TAGS = ResponseProtocol("tags", TAGS_INSTRUCTION, parse_response, format_action)
ACTION_ONLY = ResponseProtocol("action-only", ACTION_ONLY_INSTRUCTION, parse_action_only, lambda action: action,
                               example=ACTION_ONLY_EXAMPLE, closing="Your action:")
PROTOCOLS: dict[str, ResponseProtocol] = {p.name: p for p in (TAGS, ACTION_ONLY)}


def protocol_of(name: str) -> ResponseProtocol:
    """The protocol called `name`; a ValueError listing the known ones otherwise."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown response protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]
