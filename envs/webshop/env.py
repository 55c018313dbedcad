"""WebShop as an agent-rl `TextEnv`.

    env = WebShopEnv(catalog="generated", split="test")
    obs, info = env.reset(options={"task_index": 3})
    obs, reward, terminated, truncated, info = env.step("search[cruelty free body butter]")

Actions are `search[query]` (on the search page) and `click[element]` (an element of the page, case
not minding). The reward is 0 until `click[Buy Now]`, which ends the episode with the purchase's score
in [0, 1] (`reward.py`); `won` (success) means score 1. `info["score"]` carries the score (0 before a
purchase) and `info["reward_parts"]` its parts. The anchor is the canonical page text plus the state the
text does not show (selected options, the results "< Prev" returns to).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from agent_rl.envs.webshop.catalog import load_catalog
from agent_rl.envs.webshop.expert import PICKS, expert_action
from agent_rl.envs.webshop.generate import DEFAULT_GOALS, DEFAULT_PRODUCTS
from agent_rl.envs.webshop.reward import RewardBreakdown, reward
from agent_rl.envs.webshop.site import DONE, RESULTS, SEARCH, SEP, Page

from agent_rl.env_api import TextEnv, check_max_steps, to_printable

DEFAULT_MAX_STEPS = 15  # the seed papers use 15 (some 30)
MAX_QUERY_CHARS = 500
SEARCH_TEMPLATE = "search[<your query>]"  # how the papers list the search action
_ACTION = re.compile(r"(search|click)\[(.*)\]", re.IGNORECASE | re.DOTALL)
ACTION_HELP = "Actions are search[your query] on the search page and click[element] for an element of the page."


class WebShopEnv(TextEnv):
    """Shop for the goals of one split of a WebShop catalog.

    Args:
        catalog: "generated" (built here, deterministic in `seed`) or "official" (the files under `path`).
        split: "train", "test" or "all".
        max_steps: steps before the episode is truncated (papers: 15, some 30); invalid actions count.
        expert: put the expert's next action in ``info["expert_action"]``.
        expert_pick: "target" (default: the expert knows the target product; score 1 on every goal) or
            "first" (buys the top search result: only what the pages show; see `expert.py`).
        path: the folder of the official files (catalog="official").
        goals: "human" or "synthetic" instructions (catalog="official").
        seed: the generator's seed, and the seed of the goals' price bounds.
        num_products, num_goals: size of the generated catalog.
        cache_dir: where the search index is cached (default $AGENT_RL_CACHE, else ~/.cache/agent_rl).
    """

    won_means: ClassVar[str] = "the purchase scores 1.0: type, every attribute and option, and the price match"

    def __init__(
        self,
        catalog: str = "generated",
        split: str = "train",
        max_steps: int = DEFAULT_MAX_STEPS,
        expert: bool = False,
        path: str | None = None,
        goals: str = "human",
        seed: int = 0,
        num_products: int = DEFAULT_PRODUCTS,
        num_goals: int = DEFAULT_GOALS,
        cache_dir: str | None = None,
        expert_pick: str = "target",
    ) -> None:
        super().__init__()
        check_max_steps(max_steps)
        if expert_pick not in PICKS:
            raise ValueError(f"expert_pick must be one of {PICKS}, got {expert_pick!r}")
        self.expert_pick = expert_pick
        self.catalog = load_catalog(catalog, None if path is None else str(path), goals, seed, num_products,
                                    num_goals, None if cache_dir is None else str(cache_dir))
        self.split = split
        self._goals = self.catalog.goals(split)
        self.max_steps = max_steps
        self.expert = bool(expert)
        self._index = 0
        self._page = Page(SEARCH)
        self._over = True  # until the first reset
        self._steps = 0
        self._result: RewardBreakdown | None = None

    @property
    def num_tasks(self) -> int:
        return len(self._goals)

    @property
    def catalog_name(self) -> str:
        return self.catalog.name

    @property
    def task_set(self) -> str:
        return f"WebShop catalog {self.catalog.name!r} ({len(self.catalog.products)} products), split {self.split!r}"

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Open the search page for goal ``options["task_index"]`` (else one drawn from the seeded RNG)."""
        super().reset(seed=seed)
        self._index = self.task_index(options)
        self._page = Page(SEARCH)
        self._over = False
        self._steps = 0
        self._result = None
        return self._observation(), self._info(rejected=False)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._over:
            raise RuntimeError("this WebShop episode is over (or never started): call reset() before step()")
        if not isinstance(action, str):
            raise TypeError(f"a WebShop action is a str, got {type(action).__name__}")
        self._steps += 1
        page, problem = self._transition(action)
        reward_value = 0.0
        if problem is None:
            self._page = page
            if page.kind == DONE:
                goal = self._goals[self._index]
                self._result = reward(goal, self.catalog.site.products[page.asin], dict(page.chosen))
                reward_value = self._result.score
            obs = self._observation()
        else:
            obs = f"Invalid action: {problem} {ACTION_HELP}{SEP}{self.catalog.site.render(self._page)}"
        terminated = self._page.kind == DONE
        truncated = not terminated and self._steps >= self.max_steps
        self._over = terminated or truncated
        return to_printable(obs), reward_value, terminated, truncated, self._info(rejected=problem is not None)

    def _transition(self, action: str) -> tuple[Page, str | None]:
        """The next page, or the current one and what was wrong with `action`."""
        page, site = self._page, self.catalog.site
        match = _ACTION.fullmatch(action.strip())
        if match is None:
            return page, f"{action[:80]!r} is neither search[...] nor click[...]."
        verb, arg = match.group(1).lower(), " ".join(match.group(2).split())
        if verb == "search":
            if page.kind != SEARCH:
                return page, "there is no search bar on this page; click[Back to Search] first."
            if not arg:
                return page, "the query is empty; write what you look for, e.g. search[red running shoes]."
            if len(arg) > MAX_QUERY_CHARS:
                return page, f"the query is {len(arg)} characters long; keep it under {MAX_QUERY_CHARS}."
            return Page(RESULTS, query=arg.lower(), page=1), None
        by_text = {c.lower(): c for c in site.clickables(page)}
        target = by_text.get(arg.lower())
        if target is None:
            return page, f"{arg[:80]!r} is not a clickable element of this page."
        return site.click(page, target), None

    def _observation(self) -> str:
        if self._page.kind == DONE:
            assert self._result is not None
            product = self.catalog.site.products[self._page.asin]
            chosen = ", ".join(f"{n}: {v}" for n, v in self._page.chosen) or "none"
            return SEP.join(["Thank you for shopping with us!", f"Purchased: {product.name}", f"Options: {chosen}",
                             f"Your score (min 0.0, max 1.0): {self._result.score:.4f}"])
        return self.catalog.site.render(self._page)

    def _admissible(self) -> list[str]:
        if self._page.kind == DONE:
            return []
        if self._page.kind == SEARCH:
            return [SEARCH_TEMPLATE]
        return [f"click[{c}]" for c in self.catalog.site.clickables(self._page)]

    def _anchor(self) -> str:
        page = self._page
        state = [f"page: {page.kind}"]
        if page.kind not in (SEARCH, RESULTS):
            state.append(f"from: {page.query} / {page.page}")
        if page.chosen:
            state.append("selected: " + ", ".join(f"{n}={v}" for n, v in page.chosen))
        if page.kind == DONE:
            state.append(f"bought: {page.asin}")
            return " | ".join(state)
        return self.catalog.site.render(page) + " | " + " | ".join(state)

    def _info(self, rejected: bool) -> dict[str, Any]:
        goal = self._goals[self._index]
        score = self._result.score if self._result is not None else 0.0
        info: dict[str, Any] = {
            "admissible_actions": self._admissible(),
            "anchor": self._anchor(),
            "won": self._result is not None and self._result.success,
            "score": score,
            "task_type": goal.category or "uncategorised",
            "task_id": f"{self.catalog.name}/{self.split}/{self._index:05d}",
            "task": to_printable(goal.instruction),
            "catalog": self.catalog.name,
            "action_rejected": rejected,
            "action_valid": not rejected,  # queries are free text: the site, not the template list, judges them
        }
        if self._result is not None:
            info["reward_parts"] = vars(self._result) | {"asin": self._page.asin, "target_asin": goal.asin}
        if self.expert:
            info["expert_action"] = expert_action(self.catalog.site, goal, self._page, self.expert_pick)
        return info
