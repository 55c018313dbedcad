"""Key-door corridor layouts: generated from a seed, split into disjoint train and held-out sets.

A layout is a corridor of rooms running west to east, cut into `segments` by locked doors. Some
corridor rooms have a closet to the north (a dead end). Each door has a colour; its key lies in a
room or closet of the segment before it, among decoy keys of other colours. The last door opens on
the vault, which holds the treasure. The agent starts in the westmost room.

Every task of a split is one layout, so the G rollouts of a group play the same corridor from the
same start: their states recur across rollouts, which is what anchor-state credit (GiGPO, HGPO)
groups on. Train and test layouts are disjoint: a layout whose `signature` is in the train split
is never drawn for the test split.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

COLOURS = ("red", "blue", "green", "yellow", "white", "black")
ROOM_NAMES = ("hall", "kitchen", "library", "study", "pantry", "gallery", "chapel", "armory", "cellar",
              "parlor", "nursery", "workshop", "scullery", "ballroom", "lounge", "office")
SPLITS = {"train": (256, 0), "test": (64, 1_000_003)}  # split -> (layouts, first generator seed)


@dataclass(frozen=True)
class Layout:
    """One corridor. Places are corridor rooms `0..n-1`, their closets `c<i>`, and the `vault`."""

    rooms: tuple[str, ...]  # corridor room names, west to east
    closets: frozenset[int]  # corridor rooms that have a closet to the north
    doors: tuple[tuple[int, str], ...]  # (corridor room the door is east of, colour), west to east
    keys: tuple[tuple[str, str], ...]  # (place, colour) of every key at the start, decoys included

    @property
    def signature(self) -> tuple[object, ...]:
        """What makes two layouts the same task (room names aside)."""
        return (len(self.rooms), tuple(sorted(self.closets)), self.doors, tuple(sorted(self.keys)))

    @property
    def goal_colours(self) -> tuple[str, ...]:
        return tuple(colour for _, colour in self.doors)


def generate_layout(seed: int, segments: int, rooms_per_segment: tuple[int, int], decoys: int) -> Layout:
    """A random layout: `segments` doors, each segment 2-4 rooms, one key per door plus `decoys` per segment."""
    rng = random.Random(seed)
    names = rng.sample(ROOM_NAMES, segments * rooms_per_segment[1])
    rooms: list[str] = []
    closets: set[int] = set()
    doors: list[tuple[int, str]] = []
    keys: list[tuple[str, str]] = []
    colours = rng.sample(COLOURS, segments)
    for colour in colours:
        first = len(rooms)
        count = rng.randint(*rooms_per_segment)
        rooms.extend(names[first:first + count])
        here = range(first, first + count)
        closets.update(i for i in here if rng.random() < 0.5)
        places = [str(i) for i in here] + [f"c{i}" for i in here if i in closets]
        chosen = rng.sample(places, min(len(places), 1 + decoys))
        others = [c for c in COLOURS if c != colour]
        keys.append((chosen[0], colour))
        keys.extend((place, rng.choice(others)) for place in chosen[1:])
        doors.append((first + count - 1, colour))
    return Layout(tuple(rooms), frozenset(closets), tuple(doors), tuple(keys))


@functools.lru_cache(maxsize=16)
def split_layouts(split: str, segments: int = 2, rooms_per_segment: tuple[int, int] = (2, 4),
                  decoys: int = 1) -> tuple[Layout, ...]:
    """The layouts of `split` ("train" or "test"), deterministic; test never repeats a train layout."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if isinstance(segments, bool) or not isinstance(segments, int) or not 1 <= segments <= 3:
        raise ValueError(f"segments must be 1, 2 or 3, got {segments!r}")
    low, high = rooms_per_segment
    if not 1 <= low <= high <= 5:
        raise ValueError(f"rooms_per_segment must be (low, high) with 1 <= low <= high <= 5, got {rooms_per_segment!r}")
    if isinstance(decoys, bool) or not isinstance(decoys, int) or not 0 <= decoys <= 3:
        raise ValueError(f"decoys must be an int in [0, 3], got {decoys!r}")
    taken: set[tuple[object, ...]] = set()
    if split != "train":
        taken = {layout.signature for layout in split_layouts("train", segments, rooms_per_segment, decoys)}
    size, seed = SPLITS[split]
    layouts: list[Layout] = []
    for _ in range(50 * size):
        if len(layouts) == size:
            break
        layout = generate_layout(seed, segments, rooms_per_segment, decoys)
        seed += 1
        if layout.signature not in taken:
            taken.add(layout.signature)
            layouts.append(layout)
    if len(layouts) < size:
        raise ValueError(f"only {len(layouts)} distinct layouts for split {split!r} with segments={segments}, "
                         f"rooms_per_segment={rooms_per_segment}, decoys={decoys}: allow more rooms or decoys")
    return tuple(layouts)
