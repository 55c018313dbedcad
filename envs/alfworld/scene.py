"""Our ALFWorld task generator: a room, objects placed in it and a task, written as a PDDL problem.

The vocabulary is the one the alfworld package ships with ALFRED's generator: the 120 AI2-THOR
floor plans (`alfworld/gen/layouts/`: each room's receptacle instances and the object classes seen
in it), which receptacle type can hold which object (`VAL_RECEPTACLE_OBJECTS`), which objects can be
cleaned, heated, cooled, sliced or switched on (`VAL_ACTION_OBJECTS`), which receptacles open, which
task type fits which kind of room (`GOALS_VALID`), and the goal formulas and instruction templates
of the six task types (`alfworld.gen.goal_library`). Entity names follow ALFRED's mangling
(``Cabinet|-00.33|+01.89|-02.51`` -> ``Cabinet_bar__minus_00_dot_33...``), which ALFWorld's demangler
shows to the agent as "cabinet 1".

`sample_game` is pure Python and deterministic in its seed; it does not run the engine.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from agent_rl.envs.alfworld.engine import TASK_TYPES, load_alfworld

KITCHENS = tuple(range(1, 31))
LIVING_ROOMS = tuple(range(201, 231))
BEDROOMS = tuple(range(301, 331))
BATHROOMS = tuple(range(401, 431))
FLOOR_PLANS = KITCHENS + LIVING_ROOMS + BEDROOMS + BATHROOMS
# ALFRED's valid_unseen scenes (one per room type): held out of every training split here too.
UNSEEN_FLOOR_PLANS = (10, 219, 308, 424)

# The receptacle each state-change task needs (the domain's CleanObject / HeatObject / CoolObject).
APPLIANCES = {
    "pick_clean_then_place_in_recep": "SinkBasin",
    "pick_heat_then_place_in_recep": "Microwave",
    "pick_cool_then_place_in_recep": "Fridge",
}
PROPERTY = {  # the object property each task needs (VAL_ACTION_OBJECTS key)
    "pick_clean_then_place_in_recep": "Cleanable",
    "pick_heat_then_place_in_recep": "Heatable",
    "pick_cool_then_place_in_recep": "Coolable",
}
LAMPS = ("DeskLamp", "FloorLamp")
LAMP_HOLDERS = ("Desk", "SideTable", "Dresser", "Shelf", "CoffeeTable", "DiningTable", "TVStand")
# Receptacles the layouts give no interaction pose (so no instance) but rooms hold; ALFWorld kitchens
# have four stove burners.
POSELESS_RECEPTACLES = {"StoveBurner": 4, "CoffeeMachine": 1, "Toaster": 1, "LaundryHamper": 1, "PaintingHanger": 1}
AGENT = "agent1"


@dataclass(frozen=True)
class Params:
    """How full a generated room is. The defaults give rooms like ALFWorld's (every receptacle of
    the floor plan, every object class seen in it, 1-3 of each)."""

    max_receptacles: int | None = None  # keep at most this many receptacle instances (None = all)
    max_object_classes: int | None = None  # place at most this many object classes (None = all)
    max_instances: int = 3  # 1..max_instances objects of each class (ALFRED: MAX_NUM_OF_OBJ_INSTANCES)

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> Params:
        unknown = set(params) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown ALFWorld generator params {sorted(unknown)}; use {list(cls.__dataclass_fields__)}")
        made = cls(**params)
        for name in ("max_receptacles", "max_object_classes"):
            value = getattr(made, name)
            if value is not None and (not isinstance(value, int) or value < 4):
                raise ValueError(f"{name} must be None or an int >= 4, got {value!r}")
        if not isinstance(made.max_instances, int) or made.max_instances < 1:
            raise ValueError(f"max_instances must be an int >= 1, got {made.max_instances!r}")
        return made


@dataclass(frozen=True)
class Receptacle:
    id: str  # ALFRED id, e.g. "Cabinet|-00.33|+01.89|-02.51"
    type: str  # e.g. "Cabinet"
    location: str  # e.g. "loc|-4|-12|1|0"


@dataclass(frozen=True)
class Room:
    number: int
    kind: str  # Kitchen, LivingRoom, Bedroom or Bathroom
    receptacles: tuple[Receptacle, ...]
    object_classes: frozenset[str]


@dataclass(frozen=True)
class Goal:
    task_type: str
    object_target: str
    parent_target: str = ""  # the receptacle type to put it in (empty for look_at_obj_in_light)
    toggle_target: str = ""  # the lamp (look_at_obj_in_light only)


@dataclass(frozen=True)
class GeneratedGame:
    """A game ready to write: the PDDL problem, the instruction and the official traj_data."""

    goal: Goal
    room: int
    instruction: str
    pddl_problem: str
    traj_data: dict[str, Any]


def mangle(name: str) -> str:
    """ALFRED's PDDL-safe spelling of an id (the inverse of ALFWorld's Demangler)."""
    for char, word in (("|", "_bar_"), ("-", "_minus_"), ("+", "_plus_"), (".", "_dot_"), (",", "_comma_")):
        name = name.replace(char, word)
    return name


@cache
def alfred_constants() -> Any:
    """ALFRED's generator constants as the alfworld package ships them (`alfworld.gen.constants`)."""
    load_alfworld()
    from alfworld.gen import constants

    return constants


def receptacle_types() -> tuple[str, ...]:
    """The static receptacle types of the domain (ALFRED's, less the Sink/Bathtub shells of the basins)."""
    return tuple(sorted(set(alfred_constants().STATIC_RECEPTACLES) - {"Sink", "Bathtub"}))


def can_contain(receptacle_type: str, object_class: str) -> bool:
    return object_class in alfred_constants().VAL_RECEPTACLE_OBJECTS.get(receptacle_type, ())


def has_property(object_class: str, prop: str) -> bool:
    return object_class in alfred_constants().VAL_ACTION_OBJECTS[prop]


@cache
def pickupable_classes() -> frozenset[str]:
    """Object classes that some receptacle can hold (so they can be picked up and put down)."""
    held = {obj for objects in alfred_constants().VAL_RECEPTACLE_OBJECTS.values() for obj in objects}
    return frozenset(obj for obj in held if obj in set(alfred_constants().OBJECTS))


def room_kind(number: int) -> str:
    for kind, plans in (("Kitchen", KITCHENS), ("LivingRoom", LIVING_ROOMS), ("Bedroom", BEDROOMS),
                        ("Bathroom", BATHROOMS)):
        if number in plans:
            return kind
    raise ValueError(f"floor plan {number} is not one of ALFRED's 120 ({FLOOR_PLANS[0]}..{FLOOR_PLANS[-1]})")


@cache
def load_room(number: int) -> Room:
    """A floor plan's receptacle instances (one location each) and its object classes."""
    layouts = Path(alfred_constants().__file__).parent / "layouts"
    poses = json.loads((layouts / f"FloorPlan{number}-openable.json").read_text())
    classes = frozenset(json.loads((layouts / f"FloorPlan{number}-objects.json").read_text()))
    types = set(receptacle_types())
    receptacles, used = [], set()
    for rid, (x, z, rotation, horizon) in sorted(poses.items()):
        parts = rid.split("|")
        rtype = parts[-1] if len(parts) == 5 else parts[0]  # "Sink|x|y|z|SinkBasin" is a SinkBasin
        if rtype not in types:
            continue
        location = f"loc|{round(x * 4)}|{round(z * 4)}|{round(rotation / 90) % 4}|{round(horizon)}"
        while location in used:  # one receptacle per location: "go to" names exactly one
            location += "|1"
        used.add(location)
        receptacles.append(Receptacle(rid, rtype, location))
    for rtype, count in POSELESS_RECEPTACLES.items():
        if rtype in classes and not any(r.type == rtype for r in receptacles):
            receptacles += [Receptacle(f"{rtype}|{k}", rtype, f"loc|{rtype}|{k}") for k in range(1, count + 1)]
    return Room(number, room_kind(number), tuple(receptacles), classes)


def goal_options(room: Room, task_type: str) -> list[Goal]:
    """Every (object, receptacle or lamp) goal of `task_type` the room supports."""
    if room.kind not in alfred_constants().GOALS_VALID[task_type]:
        return []
    rtypes = sorted({r.type for r in room.receptacles})
    objects = sorted(c for c in room.object_classes & pickupable_classes() if any(can_contain(t, c) for t in rtypes))
    if task_type == "look_at_obj_in_light":
        if not any(t in LAMP_HOLDERS for t in rtypes):
            return []
        return [Goal(task_type, obj, toggle_target=lamp) for lamp in LAMPS if lamp in room.object_classes
                for obj in objects]
    appliance = APPLIANCES.get(task_type)
    if appliance is not None and appliance not in rtypes:
        return []
    options = []
    for obj in objects:
        if task_type in PROPERTY and not has_property(obj, PROPERTY[task_type]):
            continue
        for target in rtypes:
            # The object must start somewhere else than a receptacle of the goal's type.
            sources = [t for t in rtypes if t != target and can_contain(t, obj)]
            if target != appliance and can_contain(target, obj) and sources:
                options.append(Goal(task_type, obj, parent_target=target))
    return options


def sample_game(task_type: str, floor_plans: Sequence[int], params: Params, seed: int, task_id: str) -> GeneratedGame:
    """Draw a room among `floor_plans`, a goal it supports and the objects' places, from `seed`."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"task_type must be one of {TASK_TYPES}, got {task_type!r}")
    rng = random.Random(seed)
    rooms = [room for room in map(load_room, floor_plans) if goal_options(room, task_type)]
    if not rooms:
        raise ValueError(f"none of the floor plans {list(floor_plans)} supports a {task_type} task")
    room = rng.choice(rooms)
    goal = rng.choice(goal_options(room, task_type))
    receptacles = _keep_receptacles(room, goal, params, rng)
    objects = _place_objects(room, goal, receptacles, params, rng)
    constants = alfred_constants()
    from alfworld.gen import goal_library

    template = rng.choice(goal_library.gdict[task_type]["templates"])
    instruction = template.format(obj=goal.object_target.lower(), recep=goal.parent_target.lower(),
                                  toggle=goal.toggle_target.lower(), mrecep="")
    goal_pddl = goal_library.gdict[task_type]["pddl"].replace("#", "-").format(
        obj=goal.object_target, recep=goal.parent_target, toggle=goal.toggle_target)
    problem = _problem_text(task_id, receptacles, objects, goal_pddl, constants)
    traj_data = {
        "task_id": task_id,
        "task_type": task_type,
        "pddl_params": {
            "object_target": goal.object_target,
            "parent_target": goal.parent_target,
            "toggle_target": goal.toggle_target,
            "mrecep_target": "",
            "object_sliced": False,
        },
        "scene": {"floor_plan": f"FloorPlan{room.number}", "scene_num": room.number, "random_seed": seed},
        "turk_annotations": {"anns": [{"task_desc": instruction, "high_descs": [], "votes": []}]},
    }
    return GeneratedGame(goal, room.number, instruction, problem, traj_data)


def _keep_receptacles(room: Room, goal: Goal, params: Params, rng: random.Random) -> list[Receptacle]:
    """All the room's receptacles, or `max_receptacles` of them keeping the ones the goal needs."""
    pool = list(room.receptacles)
    rng.shuffle(pool)
    if params.max_receptacles is None or len(pool) <= params.max_receptacles:
        return sorted(pool, key=lambda r: r.id)
    needed_types = [goal.parent_target, APPLIANCES.get(goal.task_type, "")]
    if goal.toggle_target:
        needed_types.append(next(r.type for r in pool if r.type in LAMP_HOLDERS))
    sources = [r.type for r in pool if r.type not in needed_types and can_contain(r.type, goal.object_target)]
    needed_types.append(sources[0])
    needed = [next(r for r in pool if r.type == t) for t in dict.fromkeys(needed_types) if t]
    rest = [r for r in pool if r not in needed]
    return sorted(needed + rest[: params.max_receptacles - len(needed)], key=lambda r: r.id)


def _place_objects(room: Room, goal: Goal, receptacles: list[Receptacle], params: Params,
                   rng: random.Random) -> list[tuple[str, str, Receptacle]]:
    """(object id, class, receptacle) of every object: the target's copies never start in the goal's
    receptacle type, so no game is won before it starts."""
    kept_types = {r.type for r in receptacles}
    classes = sorted(c for c in room.object_classes & pickupable_classes()
                     if c != goal.object_target and any(can_contain(t, c) for t in kept_types))
    if params.max_object_classes is not None:
        classes = sorted(rng.sample(classes, min(len(classes), params.max_object_classes - 1)))
    at_least = 2 if goal.task_type == "pick_two_obj_and_place" else 1
    counts = {c: rng.randint(1, params.max_instances) for c in classes}
    counts[goal.object_target] = rng.randint(at_least, max(at_least, params.max_instances))
    placed = []
    for cls in sorted(counts):
        holders = [r for r in receptacles if can_contain(r.type, cls)
                   and not (cls == goal.object_target and r.type == goal.parent_target)]
        placed += [(f"{cls}|{k:02d}", cls, rng.choice(holders)) for k in range(1, counts[cls] + 1)]
    if goal.toggle_target:
        holders = [r for r in receptacles if r.type in LAMP_HOLDERS]
        placed.append((f"{goal.toggle_target}|01", goal.toggle_target, rng.choice(holders)))
    return placed


def _problem_text(task_id: str, receptacles: list[Receptacle], objects: list[tuple[str, str, Receptacle]],
                  goal_pddl: str, constants: Any) -> str:
    """The PDDL problem in the layout of the official games (types declared as objects, as they do)."""
    start = "loc|start"
    locations = [start] + [r.location for r in receptacles]
    declared = (
        [f"{AGENT} - agent"]
        + [f"{cls}Type - otype" for cls in sorted(set(constants.OBJECTS) - set(receptacle_types()))]
        + [f"{rtype}Type - rtype" for rtype in receptacle_types()]
        + [f"{mangle(loc)} - location" for loc in locations]
        + [f"{mangle(r.id)} - receptacle" for r in receptacles]
        + [f"{mangle(oid)} - object" for oid, _, _ in objects]
    )
    facts = [f"(atLocation {AGENT} {mangle(start)})"]
    for r in receptacles:
        facts += [f"(receptacleType {mangle(r.id)} {r.type}Type)",
                  f"(receptacleAtLocation {mangle(r.id)} {mangle(r.location)})"]
        if r.type in constants.OPENABLE_CLASS_SET:
            facts.append(f"(openable {mangle(r.id)})")
    properties = {"Cleanable": "cleanable", "Heatable": "heatable", "Coolable": "coolable",
                  "Sliceable": "sliceable", "Toggleable": "toggleable"}
    for oid, cls, holder in objects:
        name = mangle(oid)
        facts += [f"(objectType {name} {cls}Type)", f"(inReceptacle {name} {mangle(holder.id)})",
                  f"(objectAtLocation {name} {mangle(holder.location)})"]
        if cls in pickupable_classes():
            facts.append(f"(pickupable {name})")
        if cls in constants.MOVABLE_RECEPTACLES_SET:
            facts.append(f"(isReceptacleObject {name})")
        facts += [f"({predicate} {name})" for prop, predicate in properties.items() if has_property(cls, prop)]
    rtypes = sorted({r.type for r in receptacles})
    classes = sorted({cls for _, cls, _ in objects})
    facts += [f"(canContain {t}Type {c}Type)" for t in rtypes for c in classes if can_contain(t, c)]
    lines = [f"(define (problem plan_{task_id})", "(:domain alfred)", "(:objects"]
    lines += [f"        {item}" for item in declared]
    lines += ["        )", "    (:init"]
    lines += [f"        {fact}" for fact in facts]
    lines += ["        )", goal_pddl]
    return "\n".join(lines) + "\n"
