"""Reading the action out of a response in the `<think>…</think><action>…</action>` protocol."""

from __future__ import annotations

from dataclasses import dataclass

from agent_rl.env_api import ActionSyntax

ONE_LINE = ActionSyntax()


@dataclass(frozen=True)
class ParsedResponse:
    action: str | None  # None when the response broke the protocol
    error: str = ""  # why it broke the protocol, shown to the agent as feedback


def parse_response(text: str, syntax: ActionSyntax = ONE_LINE) -> ParsedResponse:
    """Extract the single action; anything else is reported, never raised.

    Rules: exactly one `<action>` block; an optional `<think>` block before it; the action is
    printable text at most `syntax.max_chars` long: one line with whitespace collapsed, or, for a
    multi-line syntax, the block's lines as written (blank lines around it dropped).
    """
    actions = _blocks(_strip_blocks(text, "<think>", "</think>"), "<action>", "</action>")
    if len(actions) != 1:
        found = "no" if not actions else str(len(actions))
        return ParsedResponse(None, f"expected exactly one <action>...</action> block, found {found}")
    if syntax.multiline:
        action = "\n".join(line.rstrip() for line in actions[0].strip("\n").splitlines())
    else:
        action = " ".join(actions[0].split())
    if not action.strip():
        return ParsedResponse(None, "the <action> block is empty")
    return check_action(action, syntax)


def check_action(action: str, syntax: ActionSyntax) -> ParsedResponse:
    """`action` as parsed if it is non-empty, printable and short enough for `syntax`; else why not."""
    if not action.strip():
        return ParsedResponse(None, "the action is empty")
    if len(action) > syntax.max_chars:
        return ParsedResponse(None, f"the action is longer than {syntax.max_chars} characters")
    if not all(line.isprintable() for line in action.split("\n")):
        return ParsedResponse(None, "the action holds non-printable characters")
    return ParsedResponse(action)


def _blocks(text: str, open_tag: str, close_tag: str) -> list[str]:
    """The bodies of the non-overlapping `open_tag…close_tag` blocks, leftmost first, shortest body.

    Same result as `re.findall(open + "(.*?)" + close, text, re.DOTALL)`, but in one linear pass of
    `str.find`: the regex rescans to the end of the text from every unclosed opening tag (quadratic on
    a response of repeated `<action>`). Once a tag has no closing tag after it, no later one has either.
    """
    bodies = []
    pos = 0
    while (start := text.find(open_tag, pos)) != -1:
        body = start + len(open_tag)
        end = text.find(close_tag, body)
        if end == -1:
            break
        bodies.append(text[body:end])
        pos = end + len(close_tag)
    return bodies


def _strip_blocks(text: str, open_tag: str, close_tag: str) -> str:
    """`text` without its `open_tag…close_tag` blocks (as `re.sub(open + ".*?" + close, "", text)`), linear."""
    kept = []
    pos = 0
    while (start := text.find(open_tag, pos)) != -1:
        end = text.find(close_tag, start + len(open_tag))
        if end == -1:
            break
        kept.append(text[pos:start])
        pos = end + len(close_tag)
    kept.append(text[pos:])
    return "".join(kept)


def format_action(action: str) -> str:
    """The response an agent that needs no thinking gives (experts, random baselines, SFT targets)."""
    return f"<action>{action}</action>"
