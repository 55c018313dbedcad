"""An ALFWorld expert that only knows what it has seen: it searches the room before following the plan.

The planner's plan is omniscient: it walks straight to the receptacle hiding the object the task
needs, which no policy can read off its observations. Imitating it teaches a model to guess. The
exploring expert follows the plan only while every object the plan's next manipulation names has
appeared in an observation; until then it searches: it opens the receptacle it stands at when that is
closed, else goes to the unvisited receptacle most likely to hold the object class it is looking for
(`priors.py`: ALFRED's receptacle-compatibility table, cheap receptacles first), as a person would
look for a tomato on the countertop and in the fridge before the cabinets. It wins every game the
planner wins (when the room is exhausted it falls back to the plan), in more steps.

Planning is what costs (about a second a plan in a large kitchen, against tens of milliseconds for a
step): the expert replans only when it is about to follow a plan that its own search steps have made
stale, or when it has seen a new object of a class the plan needs, never at every search step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent_rl.envs.alfworld.priors import search_key

# "soapbottle 1", "cabinet 3": how the engine names every object and receptacle instance
ENTITY = re.compile(r"\b([a-z]+ \d+)\b")
NAVIGATION_PREFIXES = ("go to ", "open ", "close ")
GO_TO = "go to "


def entity_class(entity: str) -> str:
    """The class of an instance name: "tomato 2" -> "tomato"."""
    return entity.rsplit(" ", 1)[0]


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


def unseen_entities(plan: Sequence[str], state: ExplorationState) -> list[str]:
    """The objects the plan's next manipulation names that the agent has not seen yet (in command order)."""
    manipulation = next_manipulation(plan)
    return [] if manipulation is None else [e for e in ENTITY.findall(manipulation) if e not in state.seen]


def search_step(wanted: str, state: ExplorationState, admissible: Sequence[str]) -> str | None:
    """One search step for an object of class `wanted`: open the receptacle here when it is closed
    (ALFWorld offers "open <it>" only then), else go to the likeliest unvisited receptacle; None when
    every receptacle has been visited."""
    open_here = f"open {state.location}"
    if state.location and open_here in admissible:
        return open_here
    unvisited = [a[len(GO_TO):] for a in admissible if a.startswith(GO_TO) and a[len(GO_TO):] not in state.visited]
    if not unvisited:
        return None
    return GO_TO + min(unvisited, key=lambda receptacle: search_key(wanted, receptacle))


def exploring_action(plan: Sequence[str], state: ExplorationState, admissible: Sequence[str]) -> str | None:
    """The next command: the plan's when its next manipulation names only seen objects, else a search step
    for the first unseen one (the plan's first command when nothing is left to search)."""
    unseen = unseen_entities(plan, state)
    step = search_step(entity_class(unseen[0]), state, admissible) if unseen else None
    return step or (plan[0] if plan else None)


class ExploringExpert:
    """The exploring expert of one episode: its plan, what it has seen, and when the plan needs redoing.

    Args:
        replan: computes the planner's commands from the engine's current state (`engine.plan_from_here`).
    """

    def __init__(self, replan: Callable[[], list[str]]) -> None:
        self._replan = replan
        self.state = ExplorationState()
        self.plan: list[str] = []
        self.replans = 0
        self._fresh = True  # the plan starts at the current state
        self._seen_at_plan: set[str] = set()

    def reset(self, observation: str, plan: Sequence[str]) -> None:
        """Start an episode from its first observation and the plan made at reset."""
        self.state = ExplorationState()
        self.state.observe(observation)
        self._set_plan(list(plan))
        self.replans = 0

    def executed(self, command: str, applied: bool, observation: str) -> None:
        """Record a step: `command` was sent, `applied` says whether the engine could carry it out."""
        if applied:
            if self._fresh and self.plan and command == self.plan[0]:
                self.plan = self.plan[1:]
            else:
                self._fresh = False
            self.state.executed(command)
        self.state.observe(observation)

    def action(self, admissible: Sequence[str]) -> str | None:
        """The expert's next command (None when there is nothing left to do)."""
        unseen = unseen_entities(self.plan, self.state)
        if not self._fresh and (not unseen or self._new_sighting(unseen)
                                or search_step(entity_class(unseen[0]), self.state, admissible) is None):
            # about to follow the plan, something it needs may be in sight, or nothing is left to search
            self._set_plan(self._replan())
            self.replans += 1
        return exploring_action(self.plan, self.state, admissible)

    def _new_sighting(self, unseen: Sequence[str]) -> bool:
        """Whether an object of a class the plan is waiting for came into sight since the plan was made."""
        wanted = {entity_class(entity) for entity in unseen}
        return any(entity_class(entity) in wanted for entity in self.state.seen - self._seen_at_plan)

    def _set_plan(self, plan: list[str]) -> None:
        self.plan = plan
        self._fresh = True
        self._seen_at_plan = set(self.state.seen)
