"""A simulation run: visits of the demo shop, one after another, through the public API.

A visit: the home page list, product pages reached by clicks (each with its product_detail list,
from /recommendations or the similar endpoint), the cart list when something is in the cart, and a
checkout. Events (view, click, add_to_cart, purchase) carry the `recommendation_id` of the list
they came from and are sent in batches to POST /api/v1/events. Visits run one at a time so that a
seed replays the same run given the same lists.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import requests

from recadmin.events.demo import DemoShopWorld
from recadmin.events.simulation.client import ApiClient, BudgetExhausted
from recadmin.events.simulation.report import SimulationReport
from recadmin.events.simulation.visitors import ListedItem, Visitor, visitor_for_visit

PriceMode = Literal["auto", "on", "off"]
SIMILAR_SHARE = 0.25  # product pages whose list comes from /items/<id>/similar
EVENT_BATCH = 50


@dataclass(frozen=True)
class Decision:
    """One thing a visitor did: what the determinism of a seed is checked on."""

    visit: int
    customer: str
    action: str  # list, click, add_to_cart, purchase
    scene: str
    item: str = ""
    position: int = 0


class TrafficSimulator:
    def __init__(
        self,
        *,
        world: DemoShopWorld,
        client: ApiClient,
        seed: int,
        price: PriceMode = "auto",
        batch_size: int = EVENT_BATCH,
        on_progress: Callable[[SimulationReport], None] | None = None,
        concurrency: int = 1,
    ) -> None:
        self.world = world
        self.client = client
        self.seed = seed
        self.price_mode = price
        self.send_price = price != "off"
        self.batch_size = batch_size
        self.on_progress = on_progress
        # Event ids unique per run: a second run with the same seed is new traffic, not duplicates.
        self.run_id = secrets.token_hex(4)
        self.report = SimulationReport(seed=seed, price_sent=self.send_price)
        self.decisions: list[Decision] = []
        self._pending: list[dict[str, Any]] = []
        self._event_seq = 0
        # Visits may run in several threads (to keep the rate when the server is slow): each visit's
        # draws are its own, the shared counts, events and decisions are guarded by this lock.
        self.concurrency = max(1, concurrency)
        self._lock = threading.RLock()
        self._next_visit = 0
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._variant_of: dict[str, str] = {}  # recommendation_id -> experiment variant, when the API names one

    # --- the run -------------------------------------------------------------------------------

    def run(self) -> SimulationReport:
        if self.concurrency == 1:
            self._work()
        else:
            threads = [
                threading.Thread(target=self._work, name=f"visitor-{i}", daemon=True) for i in range(self.concurrency)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if self._failure is not None:
            raise self._failure
        self.report.stopped_by = "max requests" if self.client.requests >= self.client.max_requests - 1 else "time"
        try:
            self._flush(final=True)
        except BudgetExhausted:
            self.report.events_rejected += len(self._pending)
            self.report.rejected_fields["(not sent: request cap)"] += len(self._pending)
            self._pending.clear()
        # One visit's decisions are in order; visits are ordered by number (threads interleave them).
        self.decisions.sort(key=lambda d: d.visit)
        self.report.visits = self._next_visit
        self.report.requests = self.client.requests
        self.report.statuses = self.client.statuses.copy()
        self.report.seconds = self.client.elapsed()
        self.report.price_sent = self.send_price
        return self.report

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    visit = self._next_visit
                    self._next_visit += 1
                self._visit(visitor_for_visit(self.world, seed=self.seed, visit=visit), visit)
                if len(self._pending) >= self.batch_size:
                    self._flush()
                if self.on_progress is not None:
                    with self._lock:
                        self.report.visits = self._next_visit
                        self.on_progress(self.report)
        except BudgetExhausted:
            pass
        except BaseException as exc:  # noqa: BLE001 - re-raised by run() in the calling thread
            self._failure = exc
        finally:
            self._stop.set()

    def _visit(self, visitor: Visitor, visit: int) -> None:
        rows, rid = self._fetch(
            visitor, visit, "home", self.client.recommendations(scene="home", customer=visitor.customer)
        )
        clicked = self._look(visitor, visit, "home", rows, rid)
        pages = 0
        while clicked is not None:
            row, rid = clicked
            pages += 1
            self._product_page(visitor, visit, row, rid, scene="home" if pages == 1 else "product_detail")
            if not visitor.wants_more(pages):
                break
            if visitor.rng.random() < SIMILAR_SHARE:
                response = self.client.similar(row.item, scene="product_detail")
            else:
                response = self.client.recommendations(scene="product_detail", customer=visitor.customer, item=row.item)
            rows, rid = self._fetch(visitor, visit, "product_detail", response)
            clicked = self._look(visitor, visit, "product_detail", rows, rid)
        if not visitor.cart:
            return
        last = next(reversed(visitor.cart))
        rows, rid = self._fetch(
            visitor, visit, "cart", self.client.recommendations(scene="cart", customer=visitor.customer, item=last)
        )
        clicked = self._look(visitor, visit, "cart", rows, rid)
        if clicked is not None:
            self._product_page(visitor, visit, clicked[0], clicked[1], scene="cart")
        for item, recommendation_id, price, quantity in visitor.checkout():
            with self._lock:
                self._event(visitor, "purchase", item, scene="cart", recommendation_id=recommendation_id,
                            value=float(quantity), price=price)  # fmt: skip
                self.report.purchases += 1
                self.report.units += quantity
                self.report.revenue += (price or 0.0) * quantity
                if recommendation_id in self._variant_of:
                    self.report.variant_count(
                        self._variant_of[recommendation_id], purchases=1, revenue=(price or 0.0) * quantity
                    )
                self.decisions.append(Decision(visit, visitor.customer, "purchase", "cart", item))

    def _fetch(
        self, visitor: Visitor, visit: int, scene: str, response: requests.Response | None
    ) -> tuple[list[ListedItem], str | None]:
        if response is None or response.status_code != 200:
            return [], None
        try:
            body = response.json()
            rows = [ListedItem.from_api(row) for row in body.get("items") or []]
        except (ValueError, KeyError, TypeError, AttributeError):
            return [], None
        recommendation_id = body.get("recommendation_id")
        variant = _variant_name(body.get("variant"))
        with self._lock:
            if variant and recommendation_id:
                self._variant_of[recommendation_id] = variant
                self.report.variant_count(variant, customer=visitor.customer, lists=1, impressions=len(rows))
            self.report.lists[scene] += 1
            self.report.impressions += len(rows)
            for index, _row in enumerate(rows, start=1):
                self.report.impressions_by_position[index] += 1
            self.decisions.append(Decision(visit, visitor.customer, "list", scene, ",".join(r.item for r in rows)))
        return rows, recommendation_id

    def _look(
        self, visitor: Visitor, visit: int, scene: str, rows: list[ListedItem], recommendation_id: str | None
    ) -> tuple[ListedItem, str | None] | None:
        if not rows:
            return None
        examined, clicked = visitor.scan(rows)
        with self._lock:
            self.report.examined += len(examined)
        if clicked is None:
            return None
        position = rows.index(clicked) + 1
        with self._lock:
            self.report.clicks += 1
            self.report.clicks_by_position[position] += 1
            if recommendation_id in self._variant_of:
                self.report.variant_count(self._variant_of[recommendation_id], clicks=1)
            self.decisions.append(Decision(visit, visitor.customer, "click", scene, clicked.item, position))
            self._event(
                visitor, "click", clicked.item, scene=scene, recommendation_id=recommendation_id, position=position
            )
        return clicked, recommendation_id

    def _product_page(
        self, visitor: Visitor, visit: int, row: ListedItem, recommendation_id: str | None, *, scene: str
    ) -> None:
        with self._lock:
            self._event(visitor, "view", row.item, scene="product_detail")
        if row.item not in visitor.cart and visitor.adds_to_cart(row):
            known = self.world.item(row.item)
            price = row.price if row.price is not None else (known.price if known is not None else None)
            visitor.cart[row.item] = (recommendation_id, price)
            with self._lock:
                self.report.add_to_carts += 1
                self.decisions.append(Decision(visit, visitor.customer, "add_to_cart", scene, row.item))
                self._event(visitor, "add_to_cart", row.item, scene=scene, recommendation_id=recommendation_id)

    # --- events --------------------------------------------------------------------------------

    def _event(
        self,
        visitor: Visitor,
        type_: str,
        item: str,
        *,
        scene: str,
        recommendation_id: str | None = None,
        position: int | None = None,
        value: float | None = None,
        price: float | None = None,
    ) -> None:
        self._event_seq += 1
        context: dict[str, Any] = {"simulated": True, "seed": self.seed}
        if position is not None:
            context["position"] = position
        row: dict[str, Any] = {
            "event_id": f"sim-{self.run_id}-{self._event_seq}",
            "customer": visitor.customer,
            "item": item,
            "type": type_,
            "scene": scene,
            "context": context,
        }
        if recommendation_id:
            row["recommendation_id"] = recommendation_id
        if value is not None:
            row["value"] = value
        if price is not None:
            row["price"] = price
        self._pending.append(row)

    def _flush(self, *, final: bool = False) -> None:
        while True:
            with self._lock:
                # Another thread may have just sent them: no small batches besides the last one.
                if not self._pending or (not final and len(self._pending) < self.batch_size):
                    return
                batch, self._pending = self._pending[: self.batch_size * 4], self._pending[self.batch_size * 4 :]
            self._send(batch, final=final)

    def _send(self, batch: list[dict[str, Any]], *, final: bool) -> None:
        if not self.send_price:
            batch = [_without_price(row) for row in batch]
        try:
            response = self.client.events(batch, final=final)
        except BudgetExhausted:
            with self._lock:
                self._pending = batch + self._pending  # sent by the final flush, if the cap allows
            raise
        with self._lock:
            self._count_answer(batch, response, final=final)

    def _count_answer(self, batch: list[dict[str, Any]], response: requests.Response | None, *, final: bool) -> None:
        self.report.events_sent += len(batch)
        body = _json(response)
        if response is None or body is None or response.status_code not in (200, 207, 400):
            self.report.events_rejected += len(batch)
            self.report.rejected_fields["(request failed)"] += len(batch)
            return
        self.report.events_stored += int(body.get("stored") or 0)
        self.report.events_duplicates += int(body.get("duplicates") or 0)
        errors = body.get("errors") or []
        if response.status_code == 400 and not errors:  # the whole batch refused (size, shape)
            self.report.events_rejected += len(batch)
            self.report.rejected_fields[str(body.get("message", "(400)"))[:80]] += len(batch)
            return
        price_rejected = [e for e in errors if e.get("field") == "price"]
        if price_rejected and self.price_mode == "auto":
            # A server without per-unit prices on events: leave the field out from now on and
            # resend the rows it refused for it alone (their event ids make a resend safe); other
            # threads' batches already under way may come back refused too.
            self.send_price = False
            retry = [_without_price(batch[e["index"]]) for e in price_rejected if 0 <= e.get("index", -1) < len(batch)]
            self.report.events_sent -= len(retry)
            errors = [e for e in errors if e.get("field") != "price"]
            if retry:
                self._send(retry, final=final)
        for error in errors:
            self.report.events_rejected += 1
            self.report.rejected_fields[str(error.get("field"))] += 1


def _variant_name(variant: Any) -> str | None:
    # The API names the variant as {"id", "name"}; a bare name is accepted too.
    if isinstance(variant, dict):
        variant = variant.get("name")
    return str(variant) if variant else None


def _without_price(row: dict[str, Any]) -> dict[str, Any]:
    if "price" not in row:
        return row
    return {k: v for k, v in row.items() if k != "price"}


def _json(response: requests.Response | None) -> dict[str, Any] | None:
    if response is None:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
