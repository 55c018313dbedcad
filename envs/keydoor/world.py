"""The key-door world's rules: states, admissible actions, transitions, and the BFS expert.

A state is (place, held key, doors opened, where every key lies). It is immutable and hashable, so
`anchor` (its canonical text) is equal for equal states whatever the path that led there, and the
expert is a breadth-first search over these states.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

from agent_rl.envs.keydoor.layouts import Layout

VAULT = "vault"
TREASURE = "take treasure"


@dataclass(frozen=True)
class State:
    place: str  # "<i>" corridor room i, "c<i>" its closet, or "vault"
    held: str | None  # colour of the key in hand (one at a time)
    opened: int  # how many doors are open (they open west to east)
    keys: tuple[tuple[str, str], ...]  # sorted (place, colour) of the keys lying around
    won: bool = False

    @property
    def anchor(self) -> str:
        lying = ",".join(f"{colour}@{place}" for place, colour in self.keys)
        return f"at={self.place};held={self.held or '-'};open={self.opened};keys={lying};won={int(self.won)}"


def start_state(layout: Layout) -> State:
    return State(place="0", held=None, opened=0, keys=tuple(sorted(layout.keys)))


def _door_east_of(layout: Layout, room: int) -> int | None:
    """Index of the door east of corridor room `room`, if there is one."""
    for index, (west, _) in enumerate(layout.doors):
        if west == room:
            return index
    return None


def moves(layout: Layout, state: State) -> dict[str, str]:
    """The `go <direction>` actions from `state` and where each leads."""
    if state.place == VAULT:
        return {"go west": str(layout.doors[-1][0])}
    if state.place.startswith("c"):
        return {"go south": state.place[1:]}
    room = int(state.place)
    out: dict[str, str] = {}
    if room > 0:
        out["go west"] = str(room - 1)
    if room in layout.closets:
        out["go north"] = f"c{room}"
    door = _door_east_of(layout, room)
    if door is None:
        out["go east"] = str(room + 1)
    elif door < state.opened:
        out["go east"] = VAULT if door == len(layout.doors) - 1 else str(room + 1)
    return out


def admissible(layout: Layout, state: State) -> list[str]:
    """Every action the state allows, sorted; an episode that is won allows none."""
    if state.won:
        return []
    actions = list(moves(layout, state))
    actions += [f"take {colour} key" for place, colour in state.keys if place == state.place]
    if state.place == VAULT:
        actions.append(TREASURE)
    if state.place.isdigit():
        door = _door_east_of(layout, int(state.place))
        if door is not None and door >= state.opened:
            actions.append(f"open {layout.doors[door][1]} door")
    return sorted(set(actions))


def apply(layout: Layout, state: State, action: str) -> tuple[State, str]:
    """The next state and the feedback for an admissible `action` (the caller checks admissibility)."""
    if action in moves(layout, state):
        return replace(state, place=moves(layout, state)[action]), ""
    if action == TREASURE:
        return replace(state, won=True), "You take the treasure. You won!"
    if action.startswith("take "):
        colour = action.split()[1]
        lying = list(state.keys)
        lying.remove((state.place, colour))
        note = f"You take the {colour} key."
        if state.held is not None:  # one key in hand: the old one is put down here
            lying.append((state.place, state.held))
            note = f"You put down the {state.held} key and take the {colour} key."
        return replace(state, held=colour, keys=tuple(sorted(lying))), note
    colour = action.split()[1]  # "open <colour> door"
    if state.held != colour:
        holding = f"the {state.held} key" if state.held else "no key"
        return state, f"The {colour} door is locked and you hold {holding}."
    return replace(state, opened=state.opened + 1, held=None), f"The {colour} key opens the {colour} door and stays in the lock."


def place_name(layout: Layout, place: str) -> str:
    if place == VAULT:
        return "the vault"
    if place.startswith("c"):
        return f"the {layout.rooms[int(place[1:])]} closet"
    return f"the {layout.rooms[int(place)]}"


def describe(layout: Layout, state: State) -> str:
    """What the agent sees: where it is, the exits, the keys here, the door east, what it holds."""
    parts = [f"You are in {place_name(layout, state.place)}."]
    exits = [f"{action.split()[1]} to {place_name(layout, target)}" for action, target in moves(layout, state).items()]
    parts.append("Exits: " + (", ".join(exits) if exits else "none") + ".")
    if state.place.isdigit():
        door = _door_east_of(layout, int(state.place))
        if door is not None and door >= state.opened:
            parts.append(f"A locked {layout.doors[door][1]} door leads east.")
    here = [colour for place, colour in state.keys if place == state.place]
    if here:
        parts.append("You see " + ", ".join(f"a {c} key" for c in here) + ".")
    if state.place == VAULT:
        parts.append("The treasure is here.")
    parts.append(f"You hold {'the ' + state.held + ' key' if state.held else 'nothing'}.")
    return " ".join(parts)


def expert_plan(layout: Layout, state: State) -> list[str]:
    """A shortest action sequence from `state` to the treasure (BFS; ties broken by sorted action order)."""
    frontier = deque([state])
    parent: dict[State, tuple[State, str] | None] = {state: None}
    while frontier:
        current = frontier.popleft()
        if current.won:
            plan = []
            while parent[current] is not None:
                current, action = parent[current]  # type: ignore[misc]
                plan.append(action)
            return plan[::-1]
        for action in admissible(layout, current):
            following, _ = apply(layout, current, action)
            if following not in parent:
                parent[following] = (current, action)
                frontier.append(following)
    raise ValueError("this key-door layout has no solution (a door's key is missing)")
