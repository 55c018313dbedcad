"""TextWorld environments (https://github.com/microsoft/TextWorld), registered as a plugin.

Importing this package does not import textworld: `register_envs` only records entry-point strings,
so listing envs stays fast and the core runs without the optional engine installed.
"""

from __future__ import annotations

from agent_rl.envs.textworld.suites import SUITES

from agent_rl.registry import register


def register_envs() -> None:
    """Register the TextWorld env ids (the `agent_rl.envs` entry point of this package)."""
    for name, suite in SUITES.items():
        register(
            f"textworld/{name}-v0",
            entry_point="agent_rl.envs.textworld.env:TextWorldEnv",
            kwargs={"suite": name},
            description=f"TextWorld {suite.description}; kwargs: split=train|test, max_steps, expert, cache_dir",
        )
    register(
        "textworld/games-v0",
        entry_point="agent_rl.envs.textworld.env:TextWorldGamesEnv",
        description="TextWorld games of your own: path=<folder of .z8 games, each with its .json>; kwargs: max_steps, expert",
    )
