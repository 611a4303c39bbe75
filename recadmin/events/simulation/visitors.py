"""How a simulated visitor of the demo shop behaves: pure decisions, no HTTP.

A visitor is a customer of the demo shop with the tastes the generator gave it (preferred
categories, brands, price level; complements of what is in its cart). It looks down a list with a
position bias (it examines position p with probability EXAMINE_DECAY ** (p - 1) and stops at its
first click: a cascade), and clicks an examined item with a probability that grows with how well
the item matches its taste. On a product page it adds to cart with a probability from the same
match; at checkout it buys some of the cart. Every draw comes from the visitor's own
random.Random, seeded from (run seed, visit number), so the same seed gives the same visitors and,
given the same lists, the same decisions, whatever the other visits saw.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from recadmin.events.demo import DemoItem, DemoShopWorld, DemoTaste

EXAMINE_DECAY = 0.8  # probability of looking one position further down
CLICK_MAX = 0.55  # click probability of an examined item that matches the taste perfectly
CART_MAX = 0.6  # add-to-cart probability on the page of a perfect match
BUY_MAX = 0.7  # purchase probability of a perfect match in the cart at checkout
NEW_VISITOR_SHARE = 0.05  # visitors the shop has never seen (cold start)
MAX_PRODUCT_PAGES = 4  # product pages a visitor opens in one visit at most

# Category match: a preferred category, the complement of one (or of a cart item), the same
# department, anything else.
MATCH_PREFERRED = 1.0
MATCH_COMPLEMENT = 0.6
MATCH_DEPARTMENT = 0.25
MATCH_OTHER = 0.05
BRAND_FACTOR = 1.5


@dataclass(frozen=True)
class ListedItem:
    """One row of a served list, as the visitor sees it."""

    item: str
    position: int
    category: str | None = None
    price: float | None = None

    @classmethod
    def from_api(cls, row: dict[str, Any]) -> ListedItem:
        price = row.get("price")
        return cls(
            item=str(row["item"]),
            position=int(row.get("position") or 0),
            category=row.get("category"),
            price=float(price) if price is not None else None,
        )


@dataclass
class Visitor:
    customer: str
    taste: DemoTaste
    rng: random.Random
    world: DemoShopWorld
    new: bool = False
    cart: dict[str, tuple[str | None, float | None]] = field(default_factory=dict)  # item -> (recommendation_id, price)

    # --- taste ---------------------------------------------------------------------------------

    def affinity(self, row: ListedItem) -> float:
        """How much the visitor likes an item, in [0, 1]: category match x brand x price fit."""
        known: DemoItem | None = self.world.item(row.item)
        category = known.category if known is not None else row.category
        price = known.price if known is not None else row.price
        match = self._category_match(category)
        if known is not None and known.brand in self.taste.brands:
            match *= BRAND_FACTOR
        if price and category in self.world.price_levels:
            level = self.world.price_levels[category] * self.taste.budget
            match /= 1 + abs(math.log(price) - math.log(level))
        elif price:
            match /= 2  # an item the generator did not make: its price fit is unknown
        if known is not None and not (known.in_stock and known.is_active):
            match *= 0.5
        return min(1.0, match)

    def _category_match(self, category: str | None) -> float:
        if category is None:
            return MATCH_OTHER
        if category in self.taste.categories:
            return MATCH_PREFERRED
        complements = {self.world.complements.get(c) for c in self.taste.categories}
        complements.update(self.world.complements.get(c) for c in self._cart_categories())
        if category in complements:
            return MATCH_COMPLEMENT
        departments = {self._department(c) for c in self.taste.categories}
        if self._department(category) in departments:
            return MATCH_DEPARTMENT
        return MATCH_OTHER

    def _cart_categories(self) -> list[str]:
        categories = []
        for item in self.cart:
            known = self.world.item(item)
            if known is not None:
                categories.append(known.category)
        return categories

    def _department(self, category: str) -> str | None:
        return self.world.departments.get(category)

    # --- decisions -----------------------------------------------------------------------------

    def scan(self, rows: Sequence[ListedItem]) -> tuple[list[ListedItem], ListedItem | None]:
        """Look down a list: the rows examined, and the one clicked (None: no click)."""
        examined: list[ListedItem] = []
        for index, row in enumerate(rows):
            if index > 0 and self.rng.random() >= EXAMINE_DECAY:
                break
            examined.append(row)
            if self.rng.random() < CLICK_MAX * self.affinity(row):
                return examined, row
        return examined, None

    def adds_to_cart(self, row: ListedItem) -> bool:
        return self.rng.random() < CART_MAX * self.affinity(row)

    def checkout(self) -> list[tuple[str, str | None, float | None, int]]:
        """The cart items bought: (item, recommendation_id, unit price, quantity)."""
        bought = []
        for item, (recommendation_id, price) in self.cart.items():
            known = self.world.item(item)
            row = ListedItem(item=item, position=0, price=price)
            if known is not None and not known.in_stock:
                continue
            if self.rng.random() < BUY_MAX * max(0.3, self.affinity(row)):
                quantity = 2 if self.rng.random() < 0.1 else 1
                bought.append((item, recommendation_id, price, quantity))
        return bought

    def wants_more(self, pages: int) -> bool:
        return pages < MAX_PRODUCT_PAGES and self.rng.random() < 0.6


def visitor_for_visit(world: DemoShopWorld, *, seed: int, visit: int) -> Visitor:
    """The visitor of the `visit`-th visit of a run: same (seed, visit), same visitor and draws."""
    rng = random.Random(f"recadmin-sim:{seed}:{visit}")
    if rng.random() < NEW_VISITOR_SHARE or not world.tastes:
        taste = taste_draw(world, rng, customer=f"{world.prefix}sim-new-{seed}-{visit:06d}")
        return Visitor(customer=taste.customer, taste=taste, rng=rng, world=world, new=True)
    # Returning customers: a few come often (heavy-tailed activity, as in the generated history).
    index = min(len(world.tastes) - 1, int(len(world.tastes) * rng.random() ** 2))
    taste = world.tastes[index]
    return Visitor(customer=taste.customer, taste=taste, rng=rng, world=world)


def taste_draw(world: DemoShopWorld, rng: random.Random, *, customer: str) -> DemoTaste:
    """Tastes for a customer the generator did not make, drawn the way it draws them."""
    leaves = sorted(world.price_levels)
    categories = rng.sample(leaves, rng.randint(1, 2))
    departments = {world.departments[c] for c in categories}
    brands = sorted({item.brand for item in world.items if item.department in departments})
    return DemoTaste(
        customer=customer,
        categories=tuple(categories),
        brands=frozenset(rng.sample(brands, min(3, len(brands)))),
        budget=math.exp(rng.gauss(0, 0.4)),
    )
