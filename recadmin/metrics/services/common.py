"""What every step of the metrics pipeline shares: the attribution window, hours, chunking, the
served page's fields and dimensions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from recadmin.core.iterables import chunked

ATTRIBUTED_TYPES = ("click", "add_to_cart", "purchase")
WINDOW_TYPES = ("add_to_cart", "purchase")
# `metrics_rebuild` reads events (by created_at) this far before the moment it is asked for.
EVENTS_LOOKBACK = dt.timedelta(minutes=15)
# Events are looked for this many ids behind the highest one read (the `AttributionEvent` ledger
# says which of them were read): an ingestion transaction that commits after later ids did (one
# request writes up to EVENTS_MAX_BATCH = 10,000 events; a few may run at once) is still found, and
# an event naming a list still in the served-log buffer is read again until its list comes.
EVENT_ID_LOOKBACK = 50_000
# Served pages are re-read this many ids behind the bookmark, for the same reason (concurrent drains).
SERVED_ID_LOOKBACK = 2000
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_CHUNK = 2000


def attribution_window() -> dt.timedelta:
    return dt.timedelta(hours=float(getattr(settings, "ATTRIBUTION_WINDOW_HOURS", 24)))


def hour_of(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def ledger_advance(ledger: Any, field: str, *, low: int, newest: int, lookback: int) -> int:
    """The new low mark of an id ledger (`RollupPage`, `AttributionEvent`): the newest `lookback` ids
    stay checked one by one against the ledger; the ids at or below the mark leave it."""
    mark = max(low, newest - lookback)
    if mark > low:
        ledger.objects.filter(**{f"{field}__lte": mark}).delete()
    return mark


def _chunks(values: Iterable[Any], size: int = _CHUNK) -> Iterable[list[Any]]:
    return chunked(values, size)


def _page_dims(page: dict[str, Any]) -> dict[str, Any]:
    return {
        "scene": page["scene"],
        "strategy": page["strategy"],
        "model_version_id": page["model_version_id"],
        "model_label": page["model_label"],
        "experiment_id": page["experiment_id"],
        "variant_id": page["variant_id"],
        "source": page["source"],
    }


_PAGE_FIELDS = (
    "id",
    "recommendation_id",
    "offset",
    "customer_shop_id",
    "scene",
    "strategy",
    "model_version_id",
    "model_label",
    "experiment_id",
    "variant_id",
    "source",
    "fallback_reason",
    "items",
    "n_items",
    "latency_ms",
    "created_at",
)
