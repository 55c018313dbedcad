"""Where an object is likely to be, from ALFRED's own knowledge of which receptacle can hold what.

ALFRED's generator places every object on a receptacle that can hold its class
(`VAL_RECEPTACLE_OBJECTS` in `alfworld.gen.constants`: a tomato goes in a fridge, a microwave, a sink
basin, on a countertop, a dining table, ..., never in a cabinet or a drawer), or inside a movable
receptacle (bowl, pot, plate, ...) that stands on one. Lamps are not held by any receptacle in that
table; they stand on the furniture our generator uses for them (`scene.LAMP_HOLDERS`).

So a searcher that has not yet seen an object of the class it needs ranks the room's receptacles in
three tiers: those that can hold the class, those that can hold a movable receptacle that can hold
it, then the rest. With every receptacle of a tier equally likely, the order that minimises the
expected number of steps visits the cheaper ones first: an open surface costs one step to look at
("go to"), a closed receptacle two ("go to", "open"). No game or room is special-cased.
"""

from __future__ import annotations

from functools import cache

from agent_rl.envs.alfworld.scene import LAMP_HOLDERS, LAMPS, alfred_constants, can_contain

DIRECT, VIA_MOVABLE, ELSEWHERE = 0, 1, 2  # the tiers, best first


@cache
def alfred_type(text_class: str) -> str | None:
    """ALFRED's class name for the name the engine shows ("countertop" -> "CounterTop"), None if unknown."""
    return alfred_constants().OBJECTS_LOWER_TO_UPPER.get(text_class)


def is_openable(text_class: str) -> bool:
    """Whether receptacles of this class start closed and must be opened to be searched (fridge, drawer, ...)."""
    return alfred_type(text_class) in alfred_constants().OPENABLE_CLASS_SET


@cache
def tier(object_class: str, receptacle_class: str) -> int:
    """How likely `receptacle_class` is to hold `object_class` (both as the engine names them): 0, 1 or 2."""
    obj, receptacle = alfred_type(object_class), alfred_type(receptacle_class)
    if obj is None or receptacle is None:
        return ELSEWHERE
    if obj in LAMPS:
        return DIRECT if receptacle in LAMP_HOLDERS else ELSEWHERE
    if can_contain(receptacle, obj):
        return DIRECT
    movable = alfred_constants().MOVABLE_RECEPTACLES
    if any(can_contain(receptacle, holder) and can_contain(holder, obj) for holder in movable):
        return VIA_MOVABLE
    return ELSEWHERE


def search_key(object_class: str, receptacle: str) -> tuple[int, int, str]:
    """Sort key of a receptacle instance ("fridge 1") when searching for `object_class`: tier, cost, name."""
    receptacle_class = receptacle.rsplit(" ", 1)[0]
    return tier(object_class, receptacle_class), int(is_openable(receptacle_class)), receptacle
