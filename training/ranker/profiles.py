"""Customer and item features from raw events (the customer profile itself: training.customer_profile).

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

from training.customer_profile import customer_profile
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
    limit: int | None = None,
) -> dict[str, CustomerFeatures]:
    """Many customers' profiles at one moment, by training.customer_profile (the definition the
    export and serving share), category medians from `item_table`; `limit` events each at most."""
    ts = np.asarray(timestamps, dtype=np.float64)
    by_category: dict[str, list[float]] = defaultdict(list)
    for it in item_table.values():
        if it.price > 0:
            by_category[it.category].append(it.price)
    medians = {c: float(np.median(v)) for c, v in by_category.items()}
    attributes = {k: (it.category, it.brand, it.price) for k, it in item_table.items()}
    events: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for i, customer in enumerate(customers):
        events[customer].append((float(ts[i]), items[i]))
    out: dict[str, CustomerFeatures] = {}
    for customer, history in events.items():
        profile = customer_profile(
            history, items=attributes, category_median_price=medians, now=now, window_days=window_days,
            limit=limit if limit is not None else len(history),
        )  # fmt: skip
        if profile is not None:
            out[customer] = CustomerFeatures.from_dict(profile)
    return out


def item_popularity(
    items: Sequence[str], timestamps: Sequence[float] | np.ndarray, *, now: float, window_days: float = 30.0
) -> dict[str, float]:
    """Events per item in the `window_days` before `now`."""
    ts = np.asarray(timestamps, dtype=np.float64)
    keep = np.flatnonzero((ts <= now) & (ts > now - window_days * DAY))
    return {k: float(v) for k, v in Counter(items[int(i)] for i in keep).items()}
