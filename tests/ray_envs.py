"""A test env registered by `register()` at import: Ray env workers get it through `rollout.worker_modules`.

`raytest/steps-v0`: task i asks to count from 0 to TARGETS[i] with "inc". `faults` makes chosen tasks
misbehave at a chosen step, as a broken engine would: "exit" ends the whole worker process
(`os._exit`), "hang" never returns, "raise" raises. With `once_dir`, each fault fires once in all
processes together (the first env to get there claims a marker file), so a restarted episode passes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from agent_rl.env_api import TextEnv
from agent_rl.registry import register, registered_ids

TARGETS = (1, 2, 3, 2)
ENV_ID = "raytest/steps-v0"


class StepsEnv(TextEnv):
    def __init__(self, faults: dict[int, tuple[str, int]] | None = None, once_dir: str | None = None,
                 expert: bool = False, split: str = "test") -> None:
        super().__init__()
        self.split = split  # the eval CLI names a split; every split holds the same tasks
        self.faults = {int(task): tuple(fault) for task, fault in (faults or {}).items()}
        self.once_dir = once_dir
        self.expert = expert
        self.task = self.count = self.steps = 0

    @property
    def num_tasks(self) -> int:
        return len(TARGETS)

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self.task = self.task_index(options)
        self.count = self.steps = 0
        return self._obs(), self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        self.steps += 1
        kind, at_step = self.faults.get(self.task, ("", 0))
        if self.steps == at_step and self._claim(kind):
            if kind == "exit":
                os._exit(1)
            if kind == "hang":
                time.sleep(3600)
            raise RuntimeError(f"engine failed on task {self.task}")
        self.count += action == "inc"
        won = self.count == TARGETS[self.task]
        return self._obs(), float(won), won, False, self._info()

    def _claim(self, kind: str) -> bool:
        if self.once_dir is None:
            return True
        try:
            os.close(os.open(os.path.join(self.once_dir, f"{kind}-task{self.task}"), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return False
        return True

    def _obs(self) -> str:
        return f"The counter shows {self.count}."

    def _info(self) -> dict[str, Any]:
        info = {"admissible_actions": ["inc", "look"], "anchor": f"{self.task}:{self.count}",
                "won": self.count == TARGETS[self.task], "task_type": "count", "task_id": f"steps/{self.split}/{self.task}",
                "task": f"Make the counter show {TARGETS[self.task]}."}
        if self.expert:
            info["expert_action"] = "inc"
        return info


if ENV_ID not in registered_ids():
    register(ENV_ID, entry_point="ray_envs:StepsEnv", description="test env for Ray env workers")
