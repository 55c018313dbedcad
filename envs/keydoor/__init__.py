"""Key-door corridors: a pure-Python long-horizon suite for step-level credit, registered as a plugin.

Episodes take 8-20 expert steps; rollouts of a group share one layout, so they revisit the same
states; the decisive steps (which key to take, when to open a door) come early; closets and decoy
keys are dead ends that waste turns; the reward is 1 for the treasure at the very end, else 0.
"""

from __future__ import annotations

from agent_rl.registry import register


def register_envs() -> None:
    """Register the key-door env ids (the `agent_rl.envs` entry point of this package)."""
    register(
        "keydoor/corridor-v0",
        entry_point="agent_rl.envs.keydoor.env:KeyDoorEnv",
        description="Fetch the treasure behind two locked doors (key-door corridors, 256 train / 64 held-out "
                    "layouts, pure Python); kwargs: split=train|test, segments (2), rooms_per_segment ([2, 4]), "
                    "decoys (1), max_steps (30), expert",
    )
