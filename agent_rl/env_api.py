"""The environment contract: a Gymnasium `Env` whose observations and actions are text.

    obs, info = env.reset(seed=None, options=None)
    obs, reward, terminated, truncated, info = env.step(action)

`info` always carries:
- ``admissible_actions`` (list[str]): the legal actions now (empty list where the env has none);
- ``anchor`` (str): a canonical key of the env state. Equal states give equal anchors whatever the
  history and the wording of the feedback; different states give different anchors;
- ``won`` (bool): the task is solved;
- ``task_type`` (str): the family of the task, for per-type result tables;
- ``task_id`` (str): which task of the suite is being played;
- ``task`` (str): the instruction the agent is given (the memory puts it at the top of every prompt).
Envs that know a solution put the next expert action in ``info["expert_action"]`` when they were
made with ``expert=True`` (it may cost extra planning, so it is opt-in).

A step is valid when the env accepted the action and it is one of the admissible actions of the
state it was taken in. Envs whose legal actions cannot be listed (free-text search queries, code,
tool calls) list templates such as ``search[<your query>]`` and judge each action themselves: they
set ``info["action_valid"]`` (bool) on every step, which then decides validity on its own.

Tool envs: the action is still the body of ``<action>…</action>``; for `agent_rl.tools.ToolEnv` it is one
JSON tool call ``{"name": ..., "arguments": {...}}`` (the built-in ``answer`` tool ends the episode), for
the Search-R1 env a ``<search>…</search>`` or ``<answer>…</answer>`` block. Tool results are the next
observation, so they enter prompts only and are never trained on. Such envs keep a per-episode count in
``info["tool_calls"]``, which the collector copies into ``trajectory.metadata["tool_calls"]`` (SPEAR, ARPO).

Tasks: an env holds a finite, ordered suite of tasks (`num_tasks`). ``reset(options={"task_index": i})``
plays task i; without it the task is drawn from the env's RNG, which ``reset(seed=...)`` seeds. Two
resets with the same task index and seed start from identical states: that is what group rollouts need.
"""

from __future__ import annotations

import string
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
from gymnasium import spaces

REQUIRED_INFO_KEYS = ("admissible_actions", "anchor", "won", "task_type", "task_id", "task")

# Observations and actions are printable ASCII; gymnasium's Text default charset has no spaces.
MAX_TEXT_LENGTH = 65536


def text_space(max_length: int = MAX_TEXT_LENGTH) -> spaces.Text:
    return spaces.Text(min_length=0, max_length=max_length, charset=string.printable)


def to_printable(text: str) -> str:
    """Fold text into the printable-ASCII charset of `text_space` (engines emit some unicode)."""
    allowed = set(string.printable)
    return "".join(ch if ch in allowed else "?" for ch in text)


MAX_ACTION_CHARS = 256


@dataclass(frozen=True)
class ActionSyntax:
    """What an env accepts inside `<action>`: one line (commands, clicks) or code with its newlines kept.

    Envs declare theirs as the class attribute `TextEnv.action_syntax`; the collector parses with it
    (`agent_rl.rollout.parsing.parse_response`).
    """

    multiline: bool = False  # keep newlines and indentation (code actions); else collapse whitespace
    max_chars: int = MAX_ACTION_CHARS


def check_max_steps(max_steps: object) -> int:
    """`max_steps` if it is a positive int (an env's step limit), else a ValueError naming it."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    return max_steps


@dataclass(frozen=True)
class TaskSet:
    """Which tasks an env plays (`TextEnv.task_set`, e.g. a suite and split, a catalog, a data path) and how many."""

    name: str
    size: int
    won_means: str = ""  # the env's `TextEnv.won_means`


def describe_tasks(make_env: Callable[[], TextEnv]) -> TaskSet:
    """The task set of the envs `make_env` builds (builds one and closes it)."""
    env = make_env()
    try:
        return TaskSet(env.task_set, env.num_tasks, env.won_means)
    finally:
        env.close()


class TextEnv(gym.Env[str, str], ABC):
    """Base class for agent-rl environments. Subclasses implement `num_tasks`, `reset` and `step`."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}
    # What the agent may write inside <action>: one short line by default; code envs keep newlines.
    action_syntax: ClassVar[ActionSyntax] = ActionSyntax()
    # What `info["won"]` means in this env, for the success definition every table states.
    won_means: ClassVar[str] = ""

    def __init__(self) -> None:
        self.observation_space = text_space()
        self.action_space = text_space()

    @property
    @abstractmethod
    def num_tasks(self) -> int:
        """How many tasks the env's suite (split) holds."""

    @property
    def task_set(self) -> str:
        """Names the tasks played, for result tables (tables must say which catalog or data they used)."""
        return type(self).__name__

    def task_index(self, options: dict[str, Any] | None) -> int:
        """Resolve the task to play from reset options, or draw one from the seeded RNG."""
        options = options or {}
        unknown = set(options) - {"task_index"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; the only option is 'task_index'")
        if "task_index" not in options:
            return int(self.np_random.integers(self.num_tasks))
        index = options["task_index"]
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.num_tasks:
            raise ValueError(f"task_index must be an int in [0, {self.num_tasks}), got {index!r}")
        return index
