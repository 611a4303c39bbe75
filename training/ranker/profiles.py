"""Customer and item features from raw events, for the impressions export and for serving.

    customers = customer_profiles(customer_ids, item_ids, timestamps, items=item_table, now=t)
    popularity = item_popularity(item_ids, timestamps, now=t)

From each customer's events in the window (`window_days` before `now`; later events are never
used, so an export can compute the profile as of each impression's time):
  activity            number of events
  recency_days        days from the last event to `now`
  category_affinity   share of the events per item category
  brand_affinity      share of the events per brand
  price_sensitivity   share of the events on items priced below their category's median
                      (0.5 without priced events: no evidence either way)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from training.ranker.features import CustomerFeatures, ItemFeatures

DAY = 86400.0


def customer_profiles(
    customers: Sequence[str],
    items: Sequence[str],
    timestamps: Sequence[float] | np.ndarray,
    *,
    item_table: Mapping[str, ItemFeatures],
    now: float,
    window_days: float = 90.0,
) -> dict[str, CustomerFeatures]:
    ts = np.asarray(timestamps, dtype=np.float64)
    keep = np.flatnonzero((ts <= now) & (ts > now - window_days * DAY))
    by_category: dict[str, list[float]] = defaultdict(list)
    for it in item_table.values():
        if it.price > 0:
            by_category[it.category].append(it.price)
    median = {c: float(np.median(v)) for c, v in by_category.items()}
    events: dict[str, list[int]] = defaultdict(list)
    for i in keep:
        events[customers[int(i)]].append(int(i))
    out: dict[str, CustomerFeatures] = {}
    for customer, rows in events.items():
        known = [item_table[items[r]] for r in rows if items[r] in item_table]
        n = len(rows)
        categories = Counter(it.category for it in known if it.category)
        brands = Counter(it.brand for it in known if it.brand)
        priced = [it for it in known if it.price > 0 and it.category in median]
        cheap = sum(1 for it in priced if it.price < median[it.category])
        out[customer] = CustomerFeatures(
            activity=float(n),
            recency_days=float((now - ts[rows].max()) / DAY),
            category_affinity={c: k / n for c, k in categories.items()},
            brand_affinity={b: k / n for b, k in brands.items()},
            price_sensitivity=cheap / len(priced) if priced else 0.5,
        )
    return out


def item_popularity(
    items: Sequence[str], timestamps: Sequence[float] | np.ndarray, *, now: float, window_days: float = 30.0
) -> dict[str, float]:
    """Events per item in the `window_days` before `now`."""
    ts = np.asarray(timestamps, dtype=np.float64)
    keep = np.flatnonzero((ts <= now) & (ts > now - window_days * DAY))
    return {k: float(v) for k, v in Counter(items[int(i)] for i in keep).items()}
