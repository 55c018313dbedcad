"""The memory module: builds each turn's chat messages from the task, the last K steps and the actions."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent_rl.config import EnvConfig
from agent_rl.rollout.protocols import TAGS, TAGS_INSTRUCTION, ResponseProtocol, protocol_of

DEFAULT_SYSTEM_PROMPT = TAGS_INSTRUCTION


@dataclass(frozen=True)
class HistoryMemory:
    """A history window of `window` previous (observation, action) pairs, as in the seed papers (K = 2).

    The prompt carries only what the window holds, so two turns in the same state with the same
    recent history get the same prompt: that is what step-level grouping (GiGPO, HGPO) relies on.
    """

    window: int = 2
    show_admissible: bool = True
    protocol: ResponseProtocol = field(default=TAGS)  # what the model is asked to write, and how it is parsed
    system_prompt: str = ""  # "" = the protocol's instruction

    def __post_init__(self) -> None:
        if not self.system_prompt:
            object.__setattr__(self, "system_prompt", self.protocol.instruction)

    def messages(
        self, task: str, history: list[tuple[str, str]], observation: str, admissible: list[str]
    ) -> list[dict[str, str]]:
        """`history` is every earlier (observation, action-or-feedback) pair of the episode, oldest first."""
        messages = [{"role": "system", "content": self.system_prompt}]
        example = self.protocol.example
        if example is not None:  # the protocol's one-shot exchange, laid out exactly like a real turn
            messages += [
                {"role": "user", "content": self._user_turn(example.task, [], example.observation,
                                                            list(example.admissible))},
                {"role": "assistant", "content": self.protocol.format(example.action)},
            ]
        messages.append({"role": "user", "content": self._user_turn(task, history, observation, admissible)})
        return messages

    def _user_turn(self, task: str, history: list[tuple[str, str]], observation: str, admissible: list[str]) -> str:
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
        if self.protocol.closing:
            parts.append(self.protocol.closing)
        return "\n\n".join(parts)


def memory_for(env: EnvConfig) -> HistoryMemory:
    """The memory an env config asks for: its history window, admissible-action list and response protocol."""
    return HistoryMemory(window=env.history_window, show_admissible=env.show_admissible,
                         protocol=protocol_of(env.protocol))
