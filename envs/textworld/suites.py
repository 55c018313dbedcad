"""TextWorld task suites as data: which generator, with which settings, over which seeds.

A suite's split is an ordered list of games. Game ``i`` of a split is built from seed
``seeds[i]`` with the settings of ``variants[i % len(variants)]``, so a suite can mix difficulties
(and report them apart through each variant's ``task_type``). Train and test seeds are disjoint, so
the held-out test games are never trained on.

The suites are plain data: edit the constants below (or build your own `Suite`) to change them.
Games are generated on first use and cached (see `generate.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SPLITS = ("train", "test")

# Generator families: "custom" is textworld.generator.make_game with GameOptions; the others are the
# textworld.challenges generators, called in-process.
GENERATORS = ("custom", "tw-cooking", "tw-treasure_hunter", "tw-coin_collector")

# Test seeds start here, far above any train range we use, so the two never overlap.
TEST_SEED_OFFSET = 100_000

# The demo suite is what the tiny CPU model learns on: keep it small and easy, and tune it here.
DEMO_TRAIN_GAMES = 512
DEMO_TEST_GAMES = 64
DEMO_QUEST1 = {"nb_rooms": 1, "nb_objects": 3, "quest_length": 1}
DEMO_QUEST2 = {"nb_rooms": 2, "nb_objects": 4, "quest_length": 2}

CHALLENGE_TRAIN_GAMES = 16
CHALLENGE_TEST_GAMES = 8


@dataclass(frozen=True)
class Variant:
    """One setting of a generator, and the task type its games are reported under."""

    task_type: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Suite:
    """A named, finite set of generated games with disjoint train and held-out test seeds."""

    name: str
    generator: str
    variants: tuple[Variant, ...]
    train_seeds: tuple[int, ...]
    test_seeds: tuple[int, ...]
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise ValueError(
                f"suite {self.name!r}: generator must be one of {GENERATORS}, got {self.generator!r}"
            )
        if not self.variants:
            raise ValueError(f"suite {self.name!r}: give at least one Variant")
        overlap = set(self.train_seeds) & set(self.test_seeds)
        if overlap:
            raise ValueError(
                f"suite {self.name!r}: train and test seeds overlap on {sorted(overlap)[:5]}; "
                "held-out test games must use other seeds"
            )

    def seeds(self, split: str) -> tuple[int, ...]:
        """The seeds of a split, in task-index order."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.train_seeds if split == "train" else self.test_seeds

    def variant(self, index: int) -> Variant:
        """The variant that game `index` of either split is built with."""
        return self.variants[index % len(self.variants)]


def seed_range(count: int, start: int = 0) -> tuple[int, ...]:
    """`count` consecutive seeds from `start` (a helper to write suites)."""
    return tuple(range(start, start + count))


def _challenge_suite(name: str, generator: str, variants: tuple[Variant, ...], description: str) -> Suite:
    return Suite(
        name=name,
        generator=generator,
        variants=variants,
        train_seeds=seed_range(CHALLENGE_TRAIN_GAMES),
        test_seeds=seed_range(CHALLENGE_TEST_GAMES, TEST_SEED_OFFSET),
        description=description,
    )


SUITES: dict[str, Suite] = {
    "demo": Suite(
        name="demo",
        generator="custom",
        variants=(Variant("quest1", DEMO_QUEST1), Variant("quest2", DEMO_QUEST2)),
        train_seeds=seed_range(DEMO_TRAIN_GAMES),
        test_seeds=seed_range(DEMO_TEST_GAMES, TEST_SEED_OFFSET),
        description="demo suite: small custom games (1-2 rooms) whose quests take 1 or 2 actions",
    ),
    "cooking": _challenge_suite(
        "cooking",
        "tw-cooking",
        # split=None draws the food items from the generator's whole distribution.
        (
            Variant(
                "recipe1",
                {
                    "recipe": 1,
                    "take": 1,
                    "go": 1,
                    "open": True,
                    "cook": False,
                    "cut": False,
                    "drop": False,
                    "recipe_seed": 0,
                    "split": None,
                },
            ),
        ),
        "cooking games (one-ingredient recipe, one room): find, prepare and eat a meal",
    ),
    "treasure_hunter": _challenge_suite(
        "treasure_hunter",
        "tw-treasure_hunter",
        (Variant("level1", {"level": 1}), Variant("level4", {"level": 4})),
        "treasure hunter games (levels 1 and 4, 5 rooms): find the named object",
    ),
    "coin_collector": _challenge_suite(
        "coin_collector",
        "tw-coin_collector",
        (Variant("level2", {"level": 2}), Variant("level3", {"level": 3})),
        "coin collector games (levels 2 and 3: a chain of 2-3 rooms): walk to the coin and take it",
    ),
}


def get_suite(suite: str | Suite) -> Suite:
    """Look a suite up by name (a `Suite` passes through)."""
    if isinstance(suite, Suite):
        return suite
    if suite not in SUITES:
        raise ValueError(
            f"unknown TextWorld suite {suite!r}; use one of {sorted(SUITES)}, or pass a Suite object "
            "(agent_rl.envs.textworld.suites.Suite) to TextWorldEnv(suite=...)"
        )
    return SUITES[suite]
