"""The memory module: builds each turn's chat messages from the task, the last K steps and the actions."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SYSTEM_PROMPT = (
    "You are an agent playing a text game. Think step by step inside <think> </think>, "
    "then give exactly one action inside <action> </action>."
)


@dataclass(frozen=True)
class HistoryMemory:
    """A history window of `window` previous (observation, action) pairs, as in the seed papers (K = 2).

    The prompt carries only what the window holds, so two turns in the same state with the same
    recent history get the same prompt: that is what step-level grouping (GiGPO, HGPO) relies on.
    """

    window: int = 2
    show_admissible: bool = True
    system_prompt: str = DEFAULT_SYSTEM_PROMPT

    def messages(
        self, task: str, history: list[tuple[str, str]], observation: str, admissible: list[str]
    ) -> list[dict[str, str]]:
        """`history` is every earlier (observation, action-or-feedback) pair of the episode, oldest first."""
        parts = [f"Task: {task}"]
        recent = history[-self.window:] if self.window > 0 else []
        if recent:
            first = len(history) - len(recent) + 1
            lines = [f"[Step {first + i}] Observation: {obs}\nAction: {act}" for i, (obs, act) in enumerate(recent)]
            parts.append("Your last steps:\n" + "\n".join(lines))
        parts.append(f"Current observation: {observation}")
        if self.show_admissible and admissible:
            # One per line: each action then starts a line exactly as it starts the response after
            # <action>, so its tokens in the list are the tokens the policy has to write.
            parts.append("Admissible actions:\n" + "\n".join(admissible))
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": "\n\n".join(parts)},
        ]
