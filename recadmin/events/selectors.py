"""Reads of events for the layers above: a customer's typed recent history.

The history lives in the cache (events.history) but the record is the database: a read that the
cache cannot answer (no entry, a partial one, or the cache down) is answered from PostgreSQL, so a
Redis outage never makes a known customer look new (issue 10).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from recadmin.events.complements import complements_get
from recadmin.events.history import (
    HistoryEntry,
    event_device,
    history_get,
    history_key,
    history_load,
    history_load_many,
    history_split,
)

#: How many of the customer's newest events the device rule looks through (customer_last_device).
DEVICE_SCAN = 20

logger = logging.getLogger(__name__)

#: Event types that say the customer looked at an item (recently_viewed), newest first.
VIEW_TYPES = frozenset({"view", "click", "add_to_cart"})
CART_TYPES = frozenset({"add_to_cart"})


@dataclass(frozen=True)
class HistoryPrefetch:
    """What a caller read of history_prefetch_key(customer) in its own cache round trip: the members
    (newest first, one more than the limit), or failed=True when that round trip failed."""

    customer: str
    members: Sequence[bytes | str] = ()
    failed: bool = False


@dataclass(frozen=True)
class CustomerHistory:
    """A customer's recent events, typed for serving."""

    entries: tuple[HistoryEntry, ...] = ()  # newest first
    # Where it was read: "cache", "database" (a cold or failed cache), "none" (no customer / nothing answered).
    read_from: str = "none"
    purchases: dict[str, dt.datetime] = field(default_factory=dict)  # item -> latest purchase time

    @property
    def item_ids(self) -> list[str]:
        """Oldest first, as the model takes them."""
        return [e.item for e in reversed(self.entries)]

    def recent(self, types: frozenset[str] | None = None, *, limit: int = 50) -> list[str]:
        """Distinct items, newest first, of the given event types (all when None)."""
        seen: dict[str, None] = {}
        for entry in self.entries:
            if types is None or entry.type in types:
                seen.setdefault(entry.item, None)
                if len(seen) >= limit:
                    break
        return list(seen)

    def last_device(self, *, before: dt.datetime | None = None, scan: int = DEVICE_SCAN) -> str:
        """The device named by the newest event (of the newest `scan` before `before`) that names
        one, "" if none: customer_last_device's rule on the entries read, so serving asks no
        database for it. Equal to that query while the history holds the customer's newest `scan`
        events before `before` (HISTORY_LENGTH >= scan, and no more than HISTORY_LENGTH - scan
        events stamped after `before`)."""
        cutoff = before.timestamp() if before is not None else None
        looked = 0
        for entry in self.entries:  # newest first
            if cutoff is not None and entry.ts >= cutoff:
                continue
            if entry.device:
                return entry.device
            looked += 1
            if looked >= scan:
                break
        return ""


def history_prefetch_key(customer: str) -> str:
    """The key a caller may read in its own round trip (Redis: ZREVRANGE key 0 limit)."""
    return history_key(customer)


def _typed(entries: Sequence[HistoryEntry], read_from: str) -> CustomerHistory:
    purchases: dict[str, dt.datetime] = {}
    for entry in entries:
        if entry.type == "purchase" and entry.item not in purchases:
            purchases[entry.item] = dt.datetime.fromtimestamp(entry.ts, tz=dt.UTC)
    return CustomerHistory(entries=tuple(entries), read_from=read_from, purchases=purchases)


def _from_database(customer: str, limit: int, *, known: Sequence[HistoryEntry] = (), write: bool) -> CustomerHistory:
    try:
        if write:
            entries = history_load(customer, limit, known=known)
        else:
            entries = history_load_many([customer], limit, known={customer: known}, write=False)[customer]
    except Exception:  # the database down too: what the cache gave, else nothing
        logger.warning("history of %r: the database did not answer", customer, exc_info=True)
        return _typed(list(known)[:limit], "cache" if known else "none")
    return _typed(entries, "database")


def customer_history(customer: str, limit: int, *, prefetched: HistoryPrefetch | None = None) -> CustomerHistory:
    """The customer's newest `limit` events. Warm: what `prefetched` holds (no round trip) or one
    cache read; cold (no or partial entry): one database query, written back; the cache down: one
    database query, not written back."""
    if not customer:
        return CustomerHistory()
    if prefetched is not None and prefetched.customer == customer:
        if prefetched.failed:
            return _from_database(customer, limit, write=False)
        entries, complete = history_split(prefetched.members)
        if complete:
            return _typed(entries[:limit], "cache")
        return _from_database(customer, limit, known=entries, write=True)
    try:
        return _typed(history_get(customer, limit), "cache")
    except Exception:  # the cache down: the database has the record
        logger.debug("history of %r: the cache did not answer; reading the database", customer, exc_info=True)
        return _from_database(customer, limit, write=False)


def complementary_items(items: list[str], *, limit: int = 50) -> list[tuple[str, float]]:
    """Bought together with / bought after `items`, best first (cached, refreshed periodically)."""
    return complements_get(items, limit=limit)


def customer_last_device(customer: str, *, before: dt.datetime | None = None, scan: int = DEVICE_SCAN) -> str:
    """The device named by the customer's newest event (of the newest `scan`, before `before`)
    that names one ("" if none): the ranker's device feature, read the same way when serving and
    when exporting impressions (recadmin.metrics.impressions). One indexed query: the serving path
    reads it off the customer's history instead (CustomerHistory.last_device, the same rule)."""
    from recadmin.events.models import Event

    if not customer:
        return ""
    query = Event.objects.filter(customer__shop_id=customer)
    if before is not None:
        query = query.filter(occurred_at__lt=before)
    for context in query.order_by("-occurred_at", "-id").values_list("context", flat=True)[:scan]:
        found = event_device(context)
        if found:
            return found
    return ""
