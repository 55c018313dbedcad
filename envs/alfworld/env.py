"""ALFWorld on the real text engine (TextWorld's PDDL backend) as an agent-rl `TextEnv`.

    env = AlfWorldJsonEnv(path="~/alfworld/json_2.1.1", split="valid_seen")
    env = AlfWorldGeneratedEnv(suite="generated", split="test")
    obs, info = env.reset(seed=0, options={"task_index": 3})
    obs, reward, terminated, truncated, info = env.step("go to countertop 1")

As in the seed papers (verl-agent's ALFWorld manager): the observation is the engine's text as is
(the first one ends with "Your task is to: ..."); the action is lowercased and its whitespace
collapsed before the engine sees it; the admissible actions leave out "help"; a command the engine
cannot apply gets the engine's own "Nothing happens."; an episode stops after 50 steps; reward 1.0
on the step that wins (verl-agent pays 10 there; scale it in the trainer if you need to).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent_rl.envs.alfworld.engine import plan_from_here, request_infos, start_engine
from agent_rl.envs.alfworld.explorer import ExploringExpert
from agent_rl.envs.alfworld.games import AlfWorldTask, official_tasks
from agent_rl.envs.alfworld.suites import Suite, get_suite, suite_tasks
from agent_rl.envs.game_files import GameFileEnv

from agent_rl.env_api import to_printable

DEFAULT_MAX_STEPS = 50  # the seed papers' ALFWorld limit
MAX_ACTION_LENGTH = 256
ANCHORS = ("observation", "state")
EXPERT_MODES = ("planner", "explore")
ANCHOR_HEX_DIGITS = 16
TASK_MARKER = "Your task is to: "
HIDDEN_ACTIONS = frozenset({"help"})  # the papers' prompts never offer it
# PDDL facts that record what the agent has looked at, not the state of the house: no action's
# precondition and no goal reads them, so they are left out of the state anchor.
_HISTORY_PREDICATES = frozenset({"checked", "examined"})


def normalize_action(action: str) -> str:
    """The command the engine is sent: lowercased, whitespace collapsed (as the papers' projection does)."""
    return " ".join(action.lower().split())


def action_problem(action: str) -> str | None:
    """Why `action` is malformed (never sent to the engine), or None when it is a well-formed command."""
    if not action.strip():
        return "the action is empty"
    if len(action) > MAX_ACTION_LENGTH:
        return f"the action is {len(action)} characters long (at most {MAX_ACTION_LENGTH})"
    if not action.isprintable() or not action.isascii():
        return "the action holds a newline or a character that is not printable ASCII"
    return None


def state_key(facts: Sequence[object]) -> str:
    """A hash of the PDDL state: the engine's true facts, less the look-history predicates."""
    kept = sorted(str(fact) for fact in facts if getattr(fact, "name", "") not in _HISTORY_PREDICATES)
    return hashlib.sha1("\n".join(kept).encode()).hexdigest()[:ANCHOR_HEX_DIGITS]


def task_text(intro: str) -> str:
    """The instruction at the end of a game's first observation ("Your task is to: ...")."""
    start = intro.rfind(TASK_MARKER)
    if start == -1:
        raise ValueError(f"no {TASK_MARKER!r} in the game's first observation: {intro[:200]!r}")
    return intro[start + len(TASK_MARKER):].strip()


class AlfWorldEnv(GameFileEnv[AlfWorldTask]):
    """Plays an ordered list of ALFWorld games (official or generated: the same format and engine).

    Args:
        tasks: the games, in task-index order.
        max_steps: steps per episode before it is truncated (malformed actions count too).
        expert: put the planner's next command in ``info["expert_action"]``. The plan is made at
            reset and again only after an executed action that leaves it, so following it is cheap.
        anchor: "observation" (default, as the seed papers: the current observation text) or
            "state" (a hash of the PDDL state facts: equal states, equal keys, whatever the wording).
        task_set: names the games for result tables (default: "<N> ALFWorld games").
        expert_mode: "planner" (default: the plan, which knows where everything is) or "explore"
            (searches for what it has not seen before following the plan; see `explorer.py`): the
            demonstrations a policy can imitate from its observations.
    """

    won_means: ClassVar[str] = "the game's PDDL goal holds"

    def __init__(
        self,
        tasks: Sequence[AlfWorldTask],
        max_steps: int = DEFAULT_MAX_STEPS,
        expert: bool = False,
        anchor: str = "observation",
        task_set: str = "",
        expert_mode: str = "planner",
    ) -> None:
        if anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
        if expert_mode not in EXPERT_MODES:
            raise ValueError(f"expert_mode must be one of {EXPERT_MODES}, got {expert_mode!r}")
        super().__init__(tasks, task_set or f"{len(tasks)} ALFWorld games", max_steps, expert)
        self.anchor = anchor
        self.expert_mode = expert_mode
        self._explorer = ExploringExpert(lambda: plan_from_here(self._engine))
        self._request = request_infos()
        self._task: AlfWorldTask | None = None
        self._state: Any = None
        self._obs = ""
        self._instruction = ""
        self._plan: list[str] = []
        self._steps = 0
        self._episode_over = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start task ``options["task_index"]`` (else one drawn from the seeded RNG) from its initial state."""
        super().reset(seed=seed)
        self._task = self._tasks[self.task_index(options)]
        engine = self._load(self._task.game_file)
        self._request.policy_commands = self.expert
        self._state = engine.reset()  # the PDDL games are deterministic: no engine seed to set
        self._plan = list(self._state.get("policy_commands") or []) if self.expert else []
        self._obs = to_printable(self._state.feedback)
        self._instruction = task_text(self._obs)
        if self._exploring:
            self._explorer.reset(self._obs, self._plan)
        self._steps = 0
        self._episode_over = False
        return self._obs, self._info(rejected=False)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Send one command to the engine; a malformed one is answered without it."""
        if self._episode_over:
            raise RuntimeError("this ALFWorld episode is over (or never started): call reset() before step()")
        if not isinstance(action, str):
            raise TypeError(f"an ALFWorld action is a str, got {type(action).__name__}")
        self._steps += 1
        problem = action_problem(action)
        reward = 0.0
        if problem is None:
            command = normalize_action(action)
            executed = command in self._state["admissible_commands"]
            on_plan = bool(self._plan) and command == self._plan[0]
            # Replanning runs the planner: only when an executed action leaves the plan (the exploring
            # expert replans on demand, when it is about to follow a plan its searching made stale).
            self._request.policy_commands = self.expert and not self._exploring and executed and not on_plan
            self._state, _, _ = self._engine.step(command)
            if self._request.policy_commands:
                self._plan = list(self._state.get("policy_commands") or [])
            elif on_plan:
                self._plan = self._plan[1:]
            self._obs = to_printable(self._state.feedback)
            if self._exploring:
                self._explorer.executed(command, executed, self._obs)
            reward = 1.0 if self._state["won"] else 0.0
        else:
            self._obs = (
                f"Invalid action: {problem}. An action is one command on one line, such as one of the "
                "admissible actions (e.g. 'go to countertop 1', 'take apple 1 from countertop 1')."
            )
        terminated = bool(self._state["won"])
        truncated = not terminated and self._steps >= self.max_steps
        self._episode_over = terminated or truncated
        return self._obs, reward, terminated, truncated, self._info(rejected=problem is not None)

    @property
    def explorer(self) -> ExploringExpert | None:
        """The exploring expert of the current episode (`expert_mode="explore"`), else None."""
        return self._explorer if self._exploring else None

    @property
    def _exploring(self) -> bool:
        return self.expert and self.expert_mode == "explore"

    def _start_engine(self, game_file: Path) -> Any:
        return start_engine(str(game_file), self._request)

    def _info(self, rejected: bool) -> dict[str, Any]:
        assert self._task is not None
        state = self._state
        if self.anchor == "state":
            anchor = state_key(state["_facts"])
        else:
            anchor = " ".join(self._obs.split())
        info: dict[str, Any] = {
            "admissible_actions": [a for a in state["admissible_commands"] if a not in HIDDEN_ACTIONS],
            "anchor": anchor,
            "won": bool(state["won"]),
            "task_type": self._task.task_type,
            "task_id": self._task.task_id,
            "task": self._instruction,
            "game_file": str(self._task.game_file),
            "action_rejected": rejected,
        }
        if self._exploring:
            info["expert_action"] = self._explorer.action(info["admissible_actions"])
        elif self.expert:
            info["expert_action"] = self._plan[0] if self._plan else None
        return info


class AlfWorldJsonEnv(AlfWorldEnv):
    """The official ALFWorld games (json_2.1.1) from a folder you downloaded.

    Args:
        path: the json_2.1.1 folder (holding train/, valid_seen/, valid_unseen/), or one split folder.
        split: "train", "valid_seen" (in-distribution, the papers' eval split) or "valid_unseen".
        task_types: play only these task types (default: all six).
        max_steps, expert, anchor, expert_mode: as `AlfWorldEnv`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        split: str = "valid_seen",
        task_types: Sequence[str] | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        expert: bool = False,
        anchor: str = "observation",
        expert_mode: str = "planner",
    ) -> None:
        types = f", task types {sorted(task_types)}" if task_types else ""
        super().__init__(official_tasks(path, split, task_types), max_steps, expert, anchor,
                         f"ALFWorld official games in {path}, split {split!r}{types}", expert_mode)


class AlfWorldGeneratedEnv(AlfWorldEnv):
    """Games built here in the official format (see `generate.py`), generated and cached on first use.

    Args:
        suite: a suite name ("generated", "demo") or a `Suite`.
        split: "train", "test" (held-out games in the training rooms) or "test_unseen" (rooms never
            trained on, like ALFWorld's valid_unseen).
        max_steps, expert, anchor, expert_mode: as `AlfWorldEnv`.
        cache_dir: where generated games are kept (default $AGENT_RL_CACHE, else ~/.cache/agent_rl).
    """

    def __init__(
        self,
        suite: str | Suite = "generated",
        split: str = "train",
        max_steps: int = DEFAULT_MAX_STEPS,
        expert: bool = False,
        anchor: str = "observation",
        cache_dir: str | os.PathLike[str] | None = None,
        expert_mode: str = "planner",
    ) -> None:
        chosen = get_suite(suite)
        super().__init__(suite_tasks(chosen, split, cache_dir), max_steps, expert, anchor,
                         f"ALFWorld suite {chosen.name!r}, split {split!r} (generated here)", expert_mode)
