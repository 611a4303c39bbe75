"""Synthetic logged impressions with planted effects, for tests and the benchmark.

A shop of `categories` x `brands`, customers with a hidden taste (a category distribution and a
favourite brand) and a hidden price sensitivity. Each request shows `slate` candidates, retrieved
by a noisy view of the customer's taste (source "model") or by popularity ("popular"), ordered by
retrieval score. Planted effects on the outcome:
  - taste match: click odds grow with the customer's true affinity for the item's category and
    brand (the logged affinities are estimates from a handful of events, so noisy);
  - position bias: click odds fall with log(position), independent of the item;
  - price sensitivity: a clicked item is bought less often the more it costs relative to its
    category, in proportion to the customer's sensitivity (an interaction a linear model cannot
    express); nothing out of stock is bought;
  - context: each category draws more clicks at its own time of day, phones click cheaper items
    (interactions of context and item), the "cart" scene converts better.
The retrieval score knows the taste only roughly and nothing of price or position.
"""

from __future__ import annotations

import math

import numpy as np

from training.ranker.features import CustomerFeatures, ImpressionTable, ItemFeatures

SCENES = ("home", "product", "cart")
DEVICES = ("mobile", "desktop")
START = 1_780_000_000.0  # a fixed start keeps the hours and weekdays reproducible


def synthetic_impressions(
    *,
    customers: int = 400,
    items: int = 300,
    categories: int = 8,
    brands: int = 20,
    requests: int = 4000,
    slate: int = 10,
    seed: int = 0,
    days: float = 28.0,
) -> ImpressionTable:
    rng = np.random.default_rng(seed)
    cat_names = [f"cat{c}" for c in range(categories)]
    brand_names = [f"brand{b}" for b in range(brands)]
    # Items: category, brand, price around the category's level, popularity, age, stock.
    item_cat = rng.integers(categories, size=items)
    item_brand = rng.integers(brands, size=items)
    cat_level = rng.uniform(math.log(10), math.log(200), size=categories)
    item_logp = cat_level[item_cat] + rng.normal(0, 0.5, size=items)
    item_pop = rng.pareto(1.5, size=items) * 20
    item_age = rng.uniform(1, 400, size=items)
    item_stock = np.where(rng.random(items) < 0.1, 0, rng.integers(1, 200, size=items))
    item_ids = [f"i{j}" for j in range(items)]
    item_table = {
        item_ids[j]: ItemFeatures(
            category=cat_names[item_cat[j]],
            brand=brand_names[item_brand[j]],
            price=round(float(math.exp(item_logp[j])), 2),
            popularity=float(round(item_pop[j])),
            age_days=float(round(item_age[j])),
            stock=float(item_stock[j]),
        )
        for j in range(items)
    }
    rel_price = item_logp - cat_level[item_cat]
    # Each category has a time of day (0-5 h, 6-11 h, ...) when it draws more clicks.
    cat_daypart = rng.integers(4, size=categories)
    # Customers: true taste, favourite brands, price sensitivity; logged features estimated from events.
    taste = rng.dirichlet(np.full(categories, 0.3), size=customers)
    fav_brand = rng.integers(brands, size=customers)
    sensitivity = rng.beta(2, 2, size=customers)
    activity = rng.poisson(12, size=customers) + 1
    customer_ids = [f"c{u}" for u in range(customers)]
    customer_table = {}
    for u in range(customers):
        events = rng.choice(categories, size=int(activity[u]), p=taste[u])
        counts = np.bincount(events, minlength=categories) / activity[u]
        brand_aff = {brand_names[fav_brand[u]]: float(min(1.0, 0.3 + rng.normal(0.3, 0.15)))}
        customer_table[customer_ids[u]] = CustomerFeatures(
            activity=float(activity[u]),
            recency_days=float(rng.exponential(10)),
            category_affinity={cat_names[c]: float(counts[c]) for c in np.flatnonzero(counts)},
            brand_affinity=brand_aff,
            price_sensitivity=float(np.clip(sensitivity[u] + rng.normal(0, 0.1), 0, 1)),
        )
    pop_p = (item_pop + 1) / (item_pop + 1).sum()

    rows: dict[str, list] = {
        k: [] for k in ("customer", "item", "scene", "position", "score", "source", "ts", "click", "purchase", "device")
    }
    times = np.sort(rng.uniform(START, START + days * 86400, size=requests))
    for r in range(requests):
        u = int(rng.integers(customers))
        scene = SCENES[int(rng.integers(len(SCENES)))]
        device = DEVICES[int(rng.random() < 0.35)]
        hour = int((times[r] % 86400) // 3600)
        # Retrieval: a noisy view of the taste for most of the slate, popularity for the rest.
        retrieval = taste[u][item_cat] * categories + rng.normal(0, 1.2, size=items)
        n_model = slate - slate // 3
        model_pick = np.argsort(-retrieval)[: n_model * 3]
        chosen = list(rng.choice(model_pick, size=n_model, replace=False))
        sources = ["model"] * n_model
        while len(chosen) < slate:
            j = int(rng.choice(items, p=pop_p))
            if j not in chosen:
                chosen.append(j)
                sources.append("popular")
        scores = retrieval[chosen] / categories
        order = np.argsort(-scores, kind="stable")
        for pos, k in enumerate(order, start=1):
            j = int(chosen[k])
            taste_match = taste[u][item_cat[j]] * categories  # ~1 on average, large for a favourite
            logit_click = (
                -4.2
                + 1.3 * math.log1p(taste_match * 2)
                + 0.9 * (item_brand[j] == fav_brand[u])
                + 0.15 * math.log1p(item_pop[j])
                - 0.7 * math.log(pos)
                + 1.0 * (hour // 6 == cat_daypart[item_cat[j]])
                - 1.0 * (device == "mobile") * rel_price[j] * 2
            )
            clicked = rng.random() < 1 / (1 + math.exp(-logit_click))
            logit_buy = (
                -1.2
                + 0.5 * math.log1p(taste_match)
                - 3.0 * (sensitivity[u] - 0.3) * rel_price[j] * 2
                - 1.5 * sensitivity[u] * (rel_price[j] > 0.3)
                + 0.6 * (scene == "cart")
            )
            bought = clicked and item_stock[j] > 0 and rng.random() < 1 / (1 + math.exp(-logit_buy))
            rows["customer"].append(customer_ids[u])
            rows["item"].append(item_ids[j])
            rows["scene"].append(scene)
            rows["position"].append(pos)
            rows["score"].append(float(scores[k]))
            rows["source"].append(sources[k])
            rows["ts"].append(float(times[r]))
            rows["click"].append(clicked)
            rows["purchase"].append(bool(bought))
            rows["device"].append(device)
    return ImpressionTable(
        customer=rows["customer"],
        item=rows["item"],
        scene=rows["scene"],
        position=np.asarray(rows["position"], dtype=np.int64),
        retrieval_score=np.asarray(rows["score"], dtype=np.float32),
        source=rows["source"],
        timestamp=np.asarray(rows["ts"], dtype=np.float64),
        clicked=np.asarray(rows["click"], dtype=bool),
        purchased=np.asarray(rows["purchase"], dtype=bool),
        customers=customer_table,
        items=item_table,
        device=rows["device"],
    )
