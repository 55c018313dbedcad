"""The one place that imports the ALFWorld engine (alfworld + TextWorld's PDDL backend).

A missing install fails here with the command that fixes it, and nothing else in this package
imports `alfworld` or `textworld` at module level, so listing envs works without them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

INSTALL_HINT = "pip install 'agent-rl[alfworld]'"

# The six ALFWorld task types (alfworld.agents.environment.alfred_tw_env.TASK_TYPES), in the order
# ALFWorld numbers them; suites and tables list them in this order.
TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)


def load_alfworld() -> ModuleType:
    """Import `alfworld` and check TextWorld's PDDL backend is there, or say how to install them."""
    try:
        alfworld = importlib.import_module("alfworld")
        importlib.import_module("fast_downward")  # textworld[pddl]: the PDDL engine and its planner
    except ImportError as err:
        raise ImportError(f"the ALFWorld environments need the alfworld package: {INSTALL_HINT}") from err
    return alfworld


def shipped_logic() -> tuple[str, str]:
    """The PDDL domain and the text grammar that the alfworld package ships (`alfworld/data/`)."""
    data = Path(load_alfworld().__file__).parent / "data"
    return (data / "alfred.pddl").read_text(), (data / "alfred.twl2").read_text()


def start_engine(game_file: str, request: Any) -> Any:
    """Start TextWorld's PDDL engine on an ALFWorld game, with ALFWorld's own name demangler.

    The demangler turns ALFRED object ids (``Mug_bar__minus_01_dot_20...``) into the names the agent
    reads ("mug 1"); without shuffling, as ALFWorld evaluates. Each engine loads its own copy of the
    planner's shared library, so engines in one process never share state.
    """
    load_alfworld()
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler

    return textworld.start(game_file, request, wrappers=[AlfredDemangler(shuffle=False)])


def request_infos() -> Any:
    """What the env asks the engine for: admissible commands and the win flag (facts come for free)."""
    load_alfworld()
    import textworld

    return textworld.EnvInfos(admissible_commands=True, won=True)


def plan_from_here(engine: Any) -> list[str]:
    """The planner's commands from the engine's current state, computed now (not at the next step).

    The same call TextWorld's `PddlEnv` makes when `policy_commands` are requested at a step, but on
    demand, so an expert that needs the plan only now and then does not pay the planner every step.
    """
    pddl_env = engine.unwrapped
    return list(pddl_env._pddl_state.replan(pddl_env._entity_infos) or [])
