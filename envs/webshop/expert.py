"""The expert shoppers: from any page, the next action towards a purchase.

`pick="target"` (the default expert) searches the goal's instruction (what an agent can read; the
target's title only when the instruction does not find it), pages through the results to the target,
selects each wanted option and buys: score 1 on every goal. It knows which product is the target,
which no policy can read off the pages. `pick="first"` acts only on what the pages show: it searches
the instruction, opens the top result, selects the options the instruction names that the item offers,
and buys (success whenever the search ranks the target first): demonstrations a policy can imitate.
Being functions of the page only, both also recover from any detour an agent took.
"""

from __future__ import annotations

from agent_rl.envs.webshop.schema import Goal
from agent_rl.envs.webshop.site import (
    BACK_TO_SEARCH,
    BUY_NOW,
    DONE,
    ITEM,
    NEXT,
    PREV,
    RESULTS,
    RESULTS_PER_PAGE,
    SEARCH,
    Page,
    Site,
)

MAX_QUERY_CHARS = 200  # well under the collector's action limit
PICKS = ("target", "first")


def query_text(text: str) -> str:
    """`text` as a query: brackets dropped (they would end the action), cut at a word boundary."""
    words, length = [], 0
    for word in text.replace("[", " ").replace("]", " ").split():
        if length + len(word) + 1 > MAX_QUERY_CHARS:
            break
        words.append(word)
        length += len(word) + 1
    return " ".join(words)


def expert_query(site: Site, goal: Goal) -> str:
    """The instruction as typed by a shopper, if it finds the target; else the target's title.

    Demonstrations then teach what a policy can do (copy the instruction into the search bar), not a
    lookup of the answer; the title fallback keeps the expert perfect on catalogs where BM25 misses.
    """
    instruction = query_text(goal.instruction)
    return instruction if goal.asin in site.search(instruction) else query_text(goal.name)


def expert_action(site: Site, goal: Goal, page: Page, pick: str = "target") -> str | None:
    """The next action, or None once the episode is over (`pick`: see the module docstring)."""
    if page.kind == DONE:
        return None
    if pick == "first":
        return _first_result_action(site, goal, page)
    if page.kind == SEARCH:
        return f"search[{expert_query(site, goal)}]"
    if page.kind == RESULTS:
        results = site.search(page.query)
        if goal.asin not in results:
            return f"click[{BACK_TO_SEARCH}]"
        wanted_page = results.index(goal.asin) // RESULTS_PER_PAGE + 1
        if wanted_page == page.page:
            return f"click[{goal.asin}]"
        return f"click[{NEXT if wanted_page > page.page else PREV}]"
    if page.kind == ITEM and page.asin == goal.asin:
        return _choose_options_then_buy(site, goal, page)
    return f"click[{PREV}]"  # another item, or a sub-page: go back


def _first_result_action(site: Site, goal: Goal, page: Page) -> str:
    if page.kind == SEARCH:
        return f"search[{query_text(goal.instruction)}]"
    if page.kind == RESULTS:
        shown = site.page_results(page)
        return f"click[{shown[0]}]" if page.page == 1 and shown else f"click[{BACK_TO_SEARCH}]"
    if page.kind == ITEM:
        return _choose_options_then_buy(site, goal, page)
    return f"click[{PREV}]"  # a sub-page: back to the item


def _choose_options_then_buy(site: Site, goal: Goal, page: Page) -> str:
    """Select each option of the goal (the instruction names them) that the item offers, then Buy Now."""
    product = site.products[page.asin]
    chosen = dict(page.chosen)
    for _, value in goal.options:
        name = product.option_name_of(value)
        if name is not None and chosen.get(name) != value:
            return f"click[{value}]"
    return f"click[{BUY_NOW}]"
