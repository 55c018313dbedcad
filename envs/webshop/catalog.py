"""A catalog ready to shop in: its products, goal splits, search engine and the name tables report.

Built once per process for each distinct set of arguments and shared by every env (all of it is
read-only); the search index is also cached on disk (see `search.engine_for`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from agent_rl.envs.webshop.generate import DEFAULT_GOALS, DEFAULT_PRODUCTS, generate_catalog
from agent_rl.envs.webshop.official import find_files, load_official, num_test_goals
from agent_rl.envs.webshop.schema import Goal, Product
from agent_rl.envs.webshop.search import engine_for
from agent_rl.envs.webshop.site import Site

CATALOG_KINDS = ("generated", "official")


@dataclass(frozen=True)
class Catalog:
    name: str  # e.g. "generated-seed0-1200" or "items_shuffle_1000/human": stated in task ids and tables
    products: tuple[Product, ...]
    splits: dict[str, tuple[Goal, ...]]
    site: Site

    def goals(self, split: str) -> tuple[Goal, ...]:
        if split not in self.splits:
            raise ValueError(f"split must be one of {sorted(self.splits)}, got {split!r}")
        if not self.splits[split]:
            raise ValueError(f"split {split!r} of catalog {self.name} holds no goal")
        return self.splits[split]


@functools.lru_cache(maxsize=8)
def load_catalog(kind: str = "generated", path: str | None = None, goals: str = "human", seed: int = 0,
                 num_products: int = DEFAULT_PRODUCTS, num_goals: int = DEFAULT_GOALS,
                 cache_dir: str | None = None) -> Catalog:
    """The generated catalog (deterministic in `seed`) or the official files under `path`."""
    if kind == "generated":
        generated = generate_catalog(seed, num_products, num_goals)
        products = generated.products
        splits = {name: generated.split(name) for name in ("train", "test", "all")}
        # The goal count changes the goals (and so the splits) but not the products: the name says both.
        name = f"generated-seed{seed}-{num_products}" + ("" if num_goals == DEFAULT_GOALS else f"-{num_goals}goals")
    elif kind == "official":
        if path is None:
            raise ValueError("webshop/official-v0 needs path=<folder with the official WebShop files>")
        products, goal_list = load_official(path, goals, seed)
        cut = num_test_goals(len(goal_list))
        splits = {"test": tuple(goal_list[:cut]), "train": tuple(goal_list[cut:]), "all": tuple(goal_list)}
        name = f"{find_files(path).products.stem}:{goals}"  # items_shuffle_1000 or the full catalog
    else:
        raise ValueError(f"catalog must be one of {CATALOG_KINDS}, got {kind!r}")
    engine = engine_for(products, cache_dir)
    return Catalog(name=name, products=products, splits=splits, site=Site(products, engine))

