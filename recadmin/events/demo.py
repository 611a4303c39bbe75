"""A seeded synthetic shop with structure a recommender can learn.

Six departments of four categories; brands belong to a department; items have a category, a
brand, a price around their category's level and a popularity (Zipf). Customers prefer one or two
categories, two or three brands and a price level. They shop in sessions: a session picks a
category (mostly a preferred one, sometimes the complement of what they bought last, e.g. phones
-> audio, rarely anything), views a few items drawn by popularity, brand affinity and price fit,
and moves down a view -> click -> add_to_cart -> purchase funnel. So there is signal for
collaborative filtering (shared tastes), for sequence models (complements) and for content
(category, brand, price). Same seed, same shop: event ids are deterministic, re-running stores
nothing twice.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import random
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

from django.utils import timezone

from recadmin.events.importers import CategorySpec, Dataset
from recadmin.events.services import EventRow

DEPARTMENTS: dict[str, list[str]] = {
    "beauty": ["skin-care", "hair-care", "makeup", "fragrance"],
    "electronics": ["phones", "audio", "computers", "cameras"],
    "home": ["kitchen", "furniture", "decor", "garden"],
    "sports": ["running", "cycling", "fitness", "outdoor"],
    "fashion": ["shoes", "dresses", "jackets", "accessories"],
    "books": ["fiction", "cooking", "travel", "science"],
}
PRICE_LEVEL = {"beauty": 25, "electronics": 250, "home": 80, "sports": 60, "fashion": 70, "books": 18}
BRAND_SYLLABLES = ["lu", "ka", "mi", "zo", "ve", "ra", "no", "ti", "sa", "po", "qui", "del"]
BRANDS_PER_DEPARTMENT = 8


def _brand_names(rng: random.Random, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(BRAND_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize())
    return sorted(names)


@dataclass(frozen=True)
class DemoItem:
    shop_id: str
    category: str  # the leaf category's slug
    department: str
    brand: str
    price: float
    in_stock: bool
    is_active: bool
    popularity: float


@dataclass(frozen=True)
class DemoTaste:
    """A customer's true tastes, as the generator drew them."""

    customer: str
    categories: tuple[str, ...]  # preferred leaf categories (1 or 2)
    brands: frozenset[str]  # preferred brands (3)
    budget: float  # price level relative to the category's (1.0 = the category's typical price)


@dataclass(frozen=True)
class DemoShopWorld:
    """What the generator knows and a recommender must learn: the catalog with each item's
    category, brand, price and popularity, every customer's tastes, and which category
    complements which (phones -> audio). The traffic simulator reads it to act like the shop's
    customers; building it needs no database."""

    prefix: str
    items: tuple[DemoItem, ...]
    tastes: tuple[DemoTaste, ...]
    complements: dict[str, str]  # leaf slug -> the leaf bought after it
    price_levels: dict[str, float]  # leaf slug -> its department's typical price
    departments: dict[str, str]  # leaf slug -> its department

    def item(self, shop_id: str) -> DemoItem | None:
        return self._by_shop_id.get(shop_id)

    def taste(self, customer: str) -> DemoTaste | None:
        return self._tastes_by_customer.get(customer)

    @cached_property
    def _by_shop_id(self) -> dict[str, DemoItem]:
        return {item.shop_id: item for item in self.items}

    @cached_property
    def _tastes_by_customer(self) -> dict[str, DemoTaste]:
        return {taste.customer: taste for taste in self.tastes}


def demo_shop_world(
    *, n_items: int = 2000, n_customers: int = 1000, seed: int = 42, prefix: str = "demo-"
) -> DemoShopWorld:
    """The shop `demo_shop_build` with the same arguments generates, without its event history."""
    return _world_build(random.Random(seed), n_items=n_items, n_customers=n_customers, prefix=prefix)[0]


def _world_build(
    rng: random.Random, *, n_items: int, n_customers: int, prefix: str
) -> tuple[DemoShopWorld, list[CategorySpec], list[dict[str, Any]], list[dict[str, Any]]]:
    # The draws below are in the generator's historical order: changing it would change every
    # shop already generated for a seed.
    root = f"{prefix}shop".strip("-")
    categories = [CategorySpec(slug=root, name="Demo shop")]
    leaves: list[tuple[str, str]] = []  # (department, leaf slug)
    for dept, subs in DEPARTMENTS.items():
        dept_slug = f"{prefix}{dept}"
        categories.append(CategorySpec(slug=dept_slug, name=dept.title(), parent=root))
        for sub in subs:
            categories.append(CategorySpec(slug=f"{prefix}{sub}", name=sub.replace("-", " ").title(), parent=dept_slug))
            leaves.append((dept, f"{prefix}{sub}"))
    complement = {}
    for subs in DEPARTMENTS.values():
        for i, sub in enumerate(subs):
            complement[f"{prefix}{sub}"] = f"{prefix}{subs[(i + 1) % len(subs)]}"

    names = _brand_names(rng, BRANDS_PER_DEPARTMENT * len(DEPARTMENTS))
    brands = {
        dept: names[i * BRANDS_PER_DEPARTMENT : (i + 1) * BRANDS_PER_DEPARTMENT] for i, dept in enumerate(DEPARTMENTS)
    }

    items: list[dict[str, Any]] = []
    world_items: list[DemoItem] = []
    for index in range(n_items):
        dept, leaf = leaves[index % len(leaves)] if index < len(leaves) else rng.choice(leaves)
        brand = rng.choice(brands[dept])
        price = round(PRICE_LEVEL[dept] * math.exp(rng.gauss(0, 0.5)), 2)
        stock = 0 if rng.random() < 0.1 else rng.randint(1, 200)
        is_active = rng.random() > 0.03
        item: dict[str, Any] = {
            "shop_id": f"{prefix}sku-{index:05d}",
            "title": f"{brand} {leaf.removeprefix(prefix).replace('-', ' ')} #{index}",
            "category": leaf,
            "brand": brand,
            "price": Decimal(str(price)),
            "currency": "EUR",
            "stock_quantity": stock,
            "in_stock": stock > 0,
            "is_active": is_active,
            "attributes": {"color": rng.choice(["black", "white", "red", "blue", "green"])},
        }
        items.append(item)
        popularity = rng.paretovariate(1.2)  # heavy-tailed: a few items sell most
        world_items.append(
            DemoItem(
                shop_id=item["shop_id"],
                category=leaf,
                department=dept,
                brand=brand,
                price=price,
                in_stock=stock > 0,
                is_active=is_active,
                popularity=popularity,
            )
        )

    customers: list[dict[str, Any]] = []
    tastes: list[DemoTaste] = []
    department_of = {leaf: dept for dept, leaf in leaves}
    for c in range(n_customers):
        favourite_leaves = rng.sample([leaf for _, leaf in leaves], rng.randint(1, 2))
        # Ordered (not a set): the brands sampled below must not depend on the process's string hashing.
        depts = dict.fromkeys(department_of[leaf] for leaf in favourite_leaves)
        favourite_brands = frozenset(rng.sample([b for d in depts for b in brands[d]], 3))
        budget = math.exp(rng.gauss(0, 0.4))
        customers.append(
            {
                "shop_id": f"{prefix}customer-{c:05d}",
                "attributes": {"segment": rng.choice(["new", "regular", "loyal"]), "budget": round(budget, 2)},
            }
        )
        tastes.append(
            DemoTaste(
                customer=customers[-1]["shop_id"],
                categories=tuple(favourite_leaves),
                brands=favourite_brands,
                budget=budget,
            )
        )
    world = DemoShopWorld(
        prefix=prefix,
        items=tuple(world_items),
        tastes=tuple(tastes),
        complements=complement,
        price_levels={leaf: float(PRICE_LEVEL[dept]) for dept, leaf in leaves},
        departments=dict(department_of),
    )
    return world, categories, items, customers


def demo_shop_build(
    *, n_items: int = 2000, n_customers: int = 1000, n_events: int = 50_000, seed: int = 42, prefix: str = "demo-"
) -> Dataset:
    rng = random.Random(seed)
    now = timezone.now().replace(microsecond=0)
    start = now - dt.timedelta(days=90)
    world, categories, items, customers = _world_build(rng, n_items=n_items, n_customers=n_customers, prefix=prefix)
    leaves = [(dept, f"{prefix}{sub}") for dept, subs in DEPARTMENTS.items() for sub in subs]
    complement = world.complements
    department_of = {leaf: dept for dept, leaf in leaves}
    by_leaf: dict[str, list[int]] = {leaf: [] for _, leaf in leaves}
    for index, world_item in enumerate(world.items):
        by_leaf[world_item.category].append(index)
    popularity = [w.popularity for w in world.items]
    item_brand = [w.brand for w in world.items]
    item_price = [w.price for w in world.items]
    prefs = [(list(t.categories), set(t.brands), t.budget) for t in world.tastes]
    log_price = [math.log(p) for p in item_price]
    activity = list(itertools.accumulate(rng.paretovariate(1.5) for _ in range(n_customers)))

    def pick_item(leaf: str, favourite_brands: set[str], budget: float) -> int | None:
        candidates = by_leaf.get(leaf) or []
        if not candidates:
            return None
        log_level = math.log(PRICE_LEVEL[department_of[leaf]] * budget)
        weights = [
            popularity[i] * (4.0 if item_brand[i] in favourite_brands else 1.0) / (1 + abs(log_price[i] - log_level))
            for i in candidates
        ]
        return rng.choices(candidates, weights=weights)[0]

    events: list[EventRow] = []
    last_bought: dict[int, str] = {}
    span = (now - start).total_seconds() - 3600
    while len(events) < n_events:
        c = bisect.bisect_left(activity, rng.random() * activity[-1])
        favourite_leaves, favourite_brands, budget = prefs[c]
        roll = rng.random()
        if roll < 0.2 and c in last_bought:
            leaf = complement[last_bought[c]]
        elif roll < 0.9:
            leaf = rng.choice(favourite_leaves)
        else:
            leaf = rng.choice(leaves)[1]
        moment = start + dt.timedelta(seconds=rng.random() * span)
        scene = rng.choice(["home", "product_detail", "product_detail", "cart", "search"])
        for _ in range(rng.randint(2, 6)):
            item = pick_item(leaf, favourite_brands, budget)
            if item is None:
                break
            funnel = ["view"]
            if rng.random() < 0.45:
                funnel.append("click")
                affinity = 0.35 if item_brand[item] in favourite_brands else 0.15
                if rng.random() < affinity:
                    funnel.append("add_to_cart")
                    if rng.random() < 0.5 and items[item]["in_stock"]:
                        funnel.append("purchase")
                        last_bought[c] = leaf
            for type_ in funnel:
                moment += dt.timedelta(seconds=rng.randint(5, 120))
                n = len(events)
                events.append(
                    EventRow(
                        index=n,
                        customer=customers[c]["shop_id"],
                        item=items[item]["shop_id"],
                        type=type_,
                        value=1.0 if type_ == "purchase" else None,
                        occurred_at=min(moment, now),
                        scene=scene,
                        context={"device": "mobile" if c % 3 else "desktop"},
                        recommendation_id=None,
                        event_id=f"{prefix}{seed}-{n}",
                    )
                )
    events = events[:n_events]
    return Dataset(
        name="demo", categories=categories, items=items, customers=customers, events=events, event_count=len(events)
    )
