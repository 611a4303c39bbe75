"""A served list: its shape, the cache that keeps it under its recommendation_id, and the served log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from recadmin.serving import fallbacks
from recadmin.serving.models import ServedSource
from recadmin.serving.served_log import kept_get, served_log_push

MAX_N = 100
# The full list cached per recommendation_id: at least this long (several pages of a usual n), and
# as long as the first request's offset + n. Later pages of the same id are slices of it; asking
# past its end gives a short or empty page rather than a different list.
LIST_LENGTH = 30
MAX_LIST_LENGTH = 500
LIST_TTL_SECONDS = 30 * 60
_LIST_KEY = "serving:list:{}"


@dataclass
class ServedList:
    """A full ranked list (as cached) and the page of it that a request asked for."""

    recommendation_id: str
    endpoint: str
    scene: str
    customer: str
    context_item: str
    category: str
    model_version: str | None
    model_version_id: int | None
    source: str
    fallback_reason: str
    items: list[dict[str, Any]]  # the whole list, each a row of ranking.format_row
    offset: int = 0
    n: int = 10
    latency_ms: float = 0.0
    # The candidate sources in chain order, and the experiment the customer was assigned to.
    strategy: tuple[str, ...] = ()
    experiment: dict[str, Any] | None = None  # {"id", "name"}
    variant: dict[str, Any] | None = None  # {"id", "name"}
    # Only for the admin preview: the model's order before rules, and what the engine did.
    raw: list[dict[str, Any]] = field(default_factory=list)
    engine_report: dict[str, Any] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)

    @property
    def page(self) -> list[dict[str, Any]]:
        return self.items[self.offset : self.offset + self.n]

    def to_cache(self) -> dict[str, Any]:
        return {
            "recommendation_id": self.recommendation_id,
            "endpoint": self.endpoint,
            "scene": self.scene,
            "customer": self.customer,
            "context_item": self.context_item,
            "category": self.category,
            "model_version": self.model_version,
            "model_version_id": self.model_version_id,
            "source": self.source,
            "fallback_reason": self.fallback_reason,
            "items": self.items,
            "strategy": list(self.strategy),
            "experiment": self.experiment,
            "variant": self.variant,
        }

    @classmethod
    def from_cache(cls, data: dict[str, Any], *, offset: int, n: int) -> ServedList:
        data = dict(data)
        data["strategy"] = tuple(data.get("strategy") or ())
        return cls(**data, offset=offset, n=n)


def new_recommendation_id() -> str:
    return uuid.uuid4().hex


def list_key(recommendation_id: str) -> str:
    return _LIST_KEY.format(recommendation_id)


def cached_list(recommendation_id: str) -> dict[str, Any] | None:
    value = kept_get(list_key(recommendation_id))
    return value if isinstance(value, dict) else None


def list_length(n: int, offset: int) -> int:
    return min(max(offset + n, LIST_LENGTH), MAX_LIST_LENGTH)


def _retrieval_score(row: dict[str, Any]) -> dict[str, Any]:
    """The score the candidate chain gave the item, as the rank stage sends it to the ranker: the
    row's own "score" is what the list shows (made descending in list order, boosted by rules), so
    a ranker trained on it would learn the position and see another scale at serving."""
    reasons = row.get("reasons") or ()
    for reason in reasons:
        if reason.get("type") == "ranked" and "retrieval_score" in reason:
            return {"retrieval_score": reason["retrieval_score"]}
    first = reasons[0] if reasons else None
    if first is not None and first.get("type") != "pinned" and isinstance(first.get("score"), int | float):
        return {"retrieval_score": round(float(first["score"]), 6)}
    return {}


def item_source(row: dict[str, Any]) -> str:
    """The candidate source that produced a row: its first reason's type."""
    reasons = row.get("reasons") or ()
    return str(reasons[0].get("type", "")) if reasons else ""


def served_record(served: ServedList) -> dict[str, Any]:
    """What the served log stores of the page served (drained into ServedRecommendation)."""
    return {
        "recommendation_id": served.recommendation_id,
        "offset": served.offset,
        "endpoint": served.endpoint,
        "customer": served.customer,
        "scene": served.scene,
        "model_version_id": served.model_version_id,
        "model_label": served.model_version or "",
        "source": served.source,
        "strategy": ",".join(served.strategy),
        "experiment_id": served.experiment["id"] if served.experiment else None,
        "variant_id": served.variant["id"] if served.variant else None,
        "fallback_reason": served.fallback_reason,
        "item": served.context_item,
        "category": served.category,
        "latency_ms": round(served.latency_ms, 2),
        "created_at": timezone.now().isoformat(),
        "items": [
            {
                "item": row["item"],
                "position": row["position"],
                "score": row["score"],
                "rules": sorted({r["rule"] for r in row["reasons"] if "rule" in r}),
                "source": item_source(row),
                # The ranker trains on the chain's score (a ranked list's score is the ranker's objective,
                # any list's is made descending for display).
                **_retrieval_score(row),
            }
            for row in served.page
        ],
    }


def served_log(served: ServedList, *, keep: bool = False) -> None:
    """Queue the page for the served log and, for a new list, keep the full list under its id and
    count it when it is a fallback (one round trip for all)."""
    counter = keep and served.source == ServedSource.FALLBACK
    counted = served_log_push(
        incr_key=fallbacks.counter_key(served.fallback_reason) if counter else None,
        keep_key=list_key(served.recommendation_id) if keep else None,
        keep_value=served.to_cache() if keep else None,
        keep_seconds=LIST_TTL_SECONDS,
        record=served_record(served),
    )
    if counter:
        fallbacks.fallback_counted(served.fallback_reason, counted)
