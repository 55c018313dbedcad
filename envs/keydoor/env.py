"""`KeyDoorEnv`: fetch the treasure at the end of a corridor of locked doors (see `layouts`, `world`).

    env = KeyDoorEnv(split="train", expert=True)
    obs, info = env.reset(options={"task_index": 3})
    obs, reward, terminated, truncated, info = env.step(info["expert_action"])

Reward 1.0 when the agent takes the treasure (terminated, won), else 0 at every step; `max_steps`
without it truncates the episode. An action that is not admissible is answered "You cannot do that
here." and changes nothing. Pure Python: thousands of steps per second.
"""

from __future__ import annotations

from typing import Any, ClassVar

from agent_rl.envs.keydoor.layouts import Layout, split_layouts
from agent_rl.envs.keydoor.world import State, admissible, apply, describe, expert_plan, start_state

from agent_rl.env_api import TextEnv, check_max_steps

DEFAULT_MAX_STEPS = 30
NOT_ADMISSIBLE = "You cannot do that here."


class KeyDoorEnv(TextEnv):
    """Key-door corridors of one split; task i is layout i, played from the same start every time.

    Args:
        split: "train" (256 layouts) or "test" (64 held-out layouts, none equal to a train one).
        segments: locked doors per corridor (1-3); each needs its own key.
        rooms_per_segment: (fewest, most) corridor rooms before each door.
        decoys: keys of other colours per segment.
        max_steps: steps per episode before it is truncated.
        expert: put the BFS planner's next action in ``info["expert_action"]``.
    """

    won_means: ClassVar[str] = "the agent took the treasure behind the last door"

    def __init__(
        self,
        split: str = "train",
        segments: int = 2,
        rooms_per_segment: tuple[int, int] | list[int] = (2, 4),
        decoys: int = 1,
        max_steps: int = DEFAULT_MAX_STEPS,
        expert: bool = False,
    ) -> None:
        super().__init__()
        low, high = rooms_per_segment  # YAML gives a list
        self.layouts = split_layouts(split, segments, (int(low), int(high)), decoys)
        self.split = split
        self.max_steps = check_max_steps(max_steps)
        self.expert = expert
        self._describe = f"key-door corridors, {segments} door(s), {low}-{high} rooms each, {decoys} decoy(s)"
        self._layout: Layout | None = None
        self._index = 0
        self._state: State | None = None
        self._steps = 0

    @property
    def num_tasks(self) -> int:
        return len(self.layouts)

    @property
    def task_set(self) -> str:
        return f"{self._describe} ({self.split}, {len(self.layouts)} layouts)"

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self._index = self.task_index(options)
        self._layout = self.layouts[self._index]
        self._state = start_state(self._layout)
        self._steps = 0
        return describe(self._layout, self._state), self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._state is None or self._layout is None or self._state.won or self._steps >= self.max_steps:
            raise RuntimeError("this key-door episode is over (or never started): call reset() before step()")
        if not isinstance(action, str):
            raise TypeError(f"a key-door action is a str, got {type(action).__name__}")
        self._steps += 1
        command = " ".join(action.lower().split())
        if command in admissible(self._layout, self._state):
            self._state, note = apply(self._layout, self._state, command)
        else:
            note = NOT_ADMISSIBLE
        obs = (note + " " if note else "") + describe(self._layout, self._state)
        won = self._state.won
        truncated = not won and self._steps >= self.max_steps
        return obs, float(won), won, truncated, self._info()

    def _info(self) -> dict[str, Any]:
        assert self._state is not None and self._layout is not None
        state, layout = self._state, self._layout
        doors = " then ".join(f"the {colour} door" for colour in layout.goal_colours)
        info: dict[str, Any] = {
            "admissible_actions": admissible(layout, state),
            "anchor": state.anchor,
            "won": state.won,
            "task_type": f"{len(layout.doors)}door-{len(layout.rooms)}rooms",
            "task_id": f"{self.split}-{self._index}",
            "task": f"Take the treasure in the vault. Go east through {doors}; each opens with the key of its colour.",
        }
        if self.expert:
            plan = [] if state.won else expert_plan(layout, state)
            info["expert_action"] = plan[0] if plan else None
        return info
