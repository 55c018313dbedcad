"""Which tasks each training iteration plays; its RNG state is part of every checkpoint."""

from __future__ import annotations

from typing import Any

import numpy as np


class TaskSampler:
    """Draws `k` distinct tasks (and a seed for each) per iteration from its own seeded generator."""

    def __init__(self, num_tasks: int, seed: int) -> None:
        if num_tasks < 1:
            raise ValueError("the training split has no tasks")
        self.num_tasks = num_tasks
        self.rng = np.random.default_rng(seed)

    def sample(self, k: int) -> list[tuple[int, int]]:
        tasks = self.rng.choice(self.num_tasks, size=min(k, self.num_tasks), replace=False)
        seeds = self.rng.integers(0, 2**31 - 1, size=len(tasks))
        return [(int(t), int(s)) for t, s in zip(tasks, seeds)]

    def state_dict(self) -> dict[str, Any]:
        return {"num_tasks": self.num_tasks, "bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_tasks"] != self.num_tasks:
            raise ValueError(f"checkpoint sampled from {state['num_tasks']} tasks, this split has {self.num_tasks}")
        self.rng.bit_generator.state = state["bit_generator"]
