"""TextWorld on the real engine as an agent-rl `TextEnv`.

    env = TextWorldEnv(suite="demo", split="train")
    obs, info = env.reset(seed=0, options={"task_index": 3})
    obs, reward, terminated, truncated, info = env.step(info["admissible_actions"][0])

The reward is the game's score gain divided by its maximum score, so winning a game sums to 1.0.
`terminated` means the game is won or lost; `truncated` means `max_steps` ran out first.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from agent_rl.envs.game_files import GameFileEnv
from agent_rl.envs.textworld.clean import clean_feedback
from agent_rl.envs.textworld.engine import load_textworld, quiet_engine
from agent_rl.envs.textworld.games import GameTask, directory_tasks, suite_tasks
from agent_rl.envs.textworld.guard import rejection, rejection_feedback
from agent_rl.envs.textworld.suites import Suite, get_suite

from agent_rl.env_api import to_printable

DEFAULT_MAX_STEPS = 30
ANCHOR_HEX_DIGITS = 16


def state_anchor(facts: Iterable[object], score: int) -> str:
    """A canonical key of a TextWorld state: a hash of its sorted logical facts and its score.

    The facts are the engine's world model (where things are, what is open, locked, eaten, ...); they
    hold no move counter and no history, so looking around or re-reading leaves the key alone, and
    opening then closing a box brings it back. The score joins them because finished quests are part
    of the state: taking an item and putting it back leaves the facts as they were but the point stays.
    """
    canonical = "\n".join(sorted(str(fact) for fact in facts)) + f"\nscore={score}"
    return hashlib.sha1(canonical.encode()).hexdigest()[:ANCHOR_HEX_DIGITS]


class TextWorldEnv(GameFileEnv[GameTask]):
    """Plays the games of a TextWorld suite split (see `suites.py`), generated and cached on first use.

    Args:
        suite: a suite name ("demo", "cooking", "treasure_hunter", "coin_collector") or a `Suite`.
        split: "train" or the held-out "test".
        max_steps: steps per episode before it is truncated (rejected actions count too).
        expert: put the planner's next command in ``info["expert_action"]`` (it re-plans every
            step, which roughly halves the speed, so it is off by default).
        cache_dir: where generated games are kept (default $AGENT_RL_CACHE, else ~/.cache/agent_rl).
    """

    won_means: ClassVar[str] = "the game's quest is complete"

    def __init__(
        self,
        suite: str | Suite = "demo",
        split: str = "train",
        max_steps: int = DEFAULT_MAX_STEPS,
        expert: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        load_textworld()  # before generating: a missing engine must fail with the install hint
        chosen = get_suite(suite)
        self._setup(suite_tasks(chosen, split, cache_dir),
                    f"TextWorld suite {chosen.name!r}, split {split!r} (generated here)", max_steps, expert)

    def _setup(self, tasks: Sequence[GameTask], task_set: str, max_steps: int, expert: bool) -> None:
        GameFileEnv.__init__(self, tasks, task_set, max_steps, expert)
        textworld = load_textworld()
        self._request = textworld.EnvInfos(
            admissible_commands=True,
            score=True,
            max_score=True,
            won=True,
            lost=True,
            facts=True,
            objective=True,
            extras=["walkthrough"],
            policy_commands=self.expert,
        )
        self._task: GameTask | None = None
        self._state: Any = None
        self._steps = 0
        self._episode_over = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start task ``options["task_index"]`` (else one drawn from the seeded RNG) from its initial state."""
        super().reset(seed=seed)
        self._task = self._tasks[self.task_index(options)]
        engine = self._load(self._task.game_file)
        # The interpreter has its own RNG; seeding it from ours makes equal seeds give equal starts.
        engine.seed(int(self.np_random.integers(1, 2**31 - 1)))
        with quiet_engine():
            self._state = engine.reset()
        self._steps = 0
        self._episode_over = False
        return clean_feedback(self._state.feedback), self._info(rejected=False)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Send one command to the game; malformed or unsafe commands are answered without the engine."""
        if self._episode_over:
            raise RuntimeError(
                "this TextWorld episode is over (or never started): call reset() before step()"
            )
        if not isinstance(action, str):
            raise TypeError(f"a TextWorld action is a str, got {type(action).__name__}")
        self._steps += 1
        reason = rejection(action)
        if reason is None:
            previous = self._state
            with quiet_engine():
                self._state, _, _ = self._engine.step(action)
            obs = clean_feedback(self._state.feedback)
            max_score = self._state["max_score"]
            reward = (self._state["score"] - previous["score"]) / max_score if max_score else 0.0
        else:
            obs = rejection_feedback(reason)
            reward = 0.0
        terminated = bool(self._state["won"] or self._state["lost"])
        truncated = not terminated and self._steps >= self.max_steps
        self._episode_over = terminated or truncated
        return obs, float(reward), terminated, truncated, self._info(rejected=reason is not None)

    def _start_engine(self, game_file: Path) -> Any:
        with quiet_engine():
            return load_textworld().start(str(game_file), self._request)

    def _switch_game(self, engine: Any, game_file: Path) -> None:
        with quiet_engine():
            engine.load(str(game_file))

    def _info(self, rejected: bool) -> dict[str, Any]:
        assert self._task is not None
        state = self._state
        info: dict[str, Any] = {
            "admissible_actions": sorted(state["admissible_commands"] or []),
            "anchor": state_anchor(state["facts"], state["score"]),
            "won": bool(state["won"]),
            "lost": bool(state["lost"]),
            "task_type": self._task.task_type,
            "task_id": self._task.task_id,
            "task": to_printable(state["objective"] or ""),
            "walkthrough": list(state["extra.walkthrough"] or []),
            "action_rejected": rejected,
        }
        if self.expert:
            plan = state["policy_commands"] or []
            info["expert_action"] = plan[0] if plan else None
        return info


class TextWorldGamesEnv(TextWorldEnv):
    """Plays the user's TextWorld games: every ``name.z8`` (with ``name.json`` beside it) in `path`.

    Args:
        path: a folder of games in the official TextWorld format (what ``tw-make`` writes).
        max_steps: steps per episode before it is truncated.
        expert: put the planner's next command in ``info["expert_action"]``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        expert: bool = False,
    ) -> None:
        # The games are given, not generated: no suite, split or cache applies.
        self._setup(directory_tasks(path), f"TextWorld games in {path}", max_steps, expert)
