"""Names shared by scenes and everything above them: the candidate sources a strategy chains.

A scene's strategy is an ordered chain of these sources (issue 9, section 1): serving asks each in
turn until one gives enough items, then applies the rules engine and diversity. Kept here, below
the rules' models and the experiments app, so every layer validates against the same names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

SOURCE_MODEL: Final = "model"
SOURCE_SIMILAR: Final = "similar"
SOURCE_COMPLEMENTARY: Final = "complementary"
SOURCE_POPULAR: Final = "popular"
SOURCE_RECENTLY_VIEWED: Final = "recently_viewed"

STRATEGY_SOURCES: Final = (SOURCE_MODEL, SOURCE_SIMILAR, SOURCE_COMPLEMENTARY, SOURCE_POPULAR, SOURCE_RECENTLY_VIEWED)
SOURCE_HELP: Final = {
    SOURCE_MODEL: "the default model version (or an experiment's version) scores the customer's history",
    SOURCE_SIMILAR: "items nearest to the current item by the model's item embeddings",
    SOURCE_COMPLEMENTARY: "bought together with / bought after the items in the cart or the current item",
    SOURCE_POPULAR: "trending in the category (the requested one or the current item's), then overall",
    SOURCE_RECENTLY_VIEWED: "the customer's own recent items (continue shopping)",
}

# A scene without a strategy of its own gets the default of its slug (then DEFAULT_STRATEGY).
DEFAULT_STRATEGIES: Final = {
    "home": (SOURCE_MODEL, SOURCE_POPULAR),
    "product_detail": (SOURCE_SIMILAR, SOURCE_MODEL, SOURCE_POPULAR),
    "cart": (SOURCE_COMPLEMENTARY, SOURCE_MODEL, SOURCE_POPULAR),
}
DEFAULT_STRATEGY: Final = (SOURCE_MODEL, SOURCE_POPULAR)
MAX_STRATEGY_LENGTH: Final = len(STRATEGY_SOURCES)


def default_strategy(slug: str) -> tuple[str, ...]:
    return DEFAULT_STRATEGIES.get(slug, DEFAULT_STRATEGY)


def strategy_problem(value: Any) -> str | None:
    """Why `value` is not a strategy (a list of distinct known source names), None when it is one.
    An empty list is a strategy: "the default of the scene's slug"."""
    if not isinstance(value, (list, tuple)):
        return "must be a list of source names"
    if not all(isinstance(name, str) for name in value):
        return "must be a list of source names"
    unknown = [name for name in value if name not in STRATEGY_SOURCES]
    if unknown:
        return f"unknown source {unknown[0]!r}; known: {', '.join(STRATEGY_SOURCES)}"
    if len(set(value)) != len(value):
        return "names a source twice"
    return None


def strategy_resolve(slug: str, strategy: Sequence[str] | None) -> tuple[str, ...]:
    """The chain a scene serves: its own, else the default of its slug."""
    return tuple(strategy) if strategy else default_strategy(slug)
