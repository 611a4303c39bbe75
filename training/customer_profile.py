"""A customer's ranker profile from their recent events: the one definition that the impressions
export (training) and the rank stage (serving) both call, so the two cannot compute it differently.

    profile = customer_profile(events, items=attributes, category_median_price=medians, now=t)

Standard library only: the web process imports it (never torch).

`events` are (unix seconds, item id) in any order. Only events before `now` and within
`window_days` count, and of those only the newest `limit`: serving holds the customer's newest
HISTORY_LENGTH events (recadmin.events.history), so training reads no more than that either.
  activity            number of those events
  recency_days        days from the newest of them to `now`
  category_affinity   share of the events per item category
  brand_affinity      share of the events per brand
  price_sensitivity   share of the priced events on items below their category's median price
                      (0.5 without priced events: no evidence either way)
None when no event counts (the ranker's defaults then stand for "unknown customer").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

DAY = 86400.0
PROFILE_WINDOW_DAYS = 90.0
PROFILE_EVENTS = 50

#: An item's attributes the profile reads: (category, brand, price; 0 = unknown).
ItemAttributes = tuple[str, str, float]


def customer_profile(
    events: Iterable[tuple[float, str]],
    *,
    items: Mapping[str, ItemAttributes],
    category_median_price: Mapping[str, float],
    now: float,
    window_days: float = PROFILE_WINDOW_DAYS,
    limit: int = PROFILE_EVENTS,
) -> dict[str, Any] | None:
    start = now - window_days * DAY
    kept = sorted((e for e in events if start < e[0] < now), key=lambda e: e[0], reverse=True)[:limit]
    if not kept:
        return None
    n = len(kept)
    known = [items[item] for _, item in kept if item in items]
    categories = Counter(category for category, _, _ in known if category)
    brands = Counter(brand for _, brand, _ in known if brand)
    priced = [(c, p) for c, _, p in known if p > 0 and c in category_median_price]
    cheap = sum(1 for c, p in priced if p < category_median_price[c])
    return {
        "activity": float(n),
        "recency_days": float((now - kept[0][0]) / DAY),
        "category_affinity": {c: k / n for c, k in categories.items()},
        "brand_affinity": {b: k / n for b, k in brands.items()},
        "price_sensitivity": cheap / len(priced) if priced else 0.5,
    }
