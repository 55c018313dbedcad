"""An ALFWorld expert that only knows what it has seen: it searches the room before following the plan.

The planner's plan is omniscient: it walks straight to the receptacle hiding the object the task
needs, which no policy can read off its observations. Imitating it teaches a model to guess. The
exploring expert follows the plan only while every object the plan's next manipulation names has
appeared in an observation; until then it visits the room's receptacles in the order of the admissible
actions (sorted), opening the closed ones, as ALFWorld's own hand-coded agent explores. It wins every
game the planner wins (when the room is exhausted it falls back to the plan), in more steps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# "soapbottle 1", "cabinet 3": how the engine names every object and receptacle instance
ENTITY = re.compile(r"\b([a-z]+ \d+)\b")
NAVIGATION_PREFIXES = ("go to ", "open ", "close ")
GO_TO = "go to "


@dataclass
class ExplorationState:
    """What the agent has seen and where it has been in the current episode."""

    seen: set[str] = field(default_factory=set)
    visited: set[str] = field(default_factory=set)
    location: str = ""

    def observe(self, observation: str) -> None:
        self.seen.update(ENTITY.findall(observation))

    def executed(self, command: str) -> None:
        if command.startswith(GO_TO):
            self.location = command[len(GO_TO):]
            self.visited.add(self.location)


def next_manipulation(plan: Sequence[str]) -> str | None:
    """The plan's first command that acts on objects (take, move, use, heat, ...), not navigation."""
    return next((command for command in plan if not command.startswith(NAVIGATION_PREFIXES)), None)


def exploring_action(plan: Sequence[str], state: ExplorationState, admissible: Sequence[str]) -> str | None:
    """The next command: the plan's when its next manipulation names only seen objects, else a search step.

    A search step opens the receptacle the agent stands at when it is closed (ALFWorld offers
    "open <it>" only then), else goes to the first receptacle not visited yet.
    """
    manipulation = next_manipulation(plan)
    if manipulation is None or set(ENTITY.findall(manipulation)) <= state.seen:
        return plan[0] if plan else None
    open_here = f"open {state.location}"
    if state.location and open_here in admissible:
        return open_here
    unvisited = [a for a in sorted(admissible) if a.startswith(GO_TO) and a[len(GO_TO):] not in state.visited]
    return unvisited[0] if unvisited else (plan[0] if plan else None)
