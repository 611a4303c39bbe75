"""How a list is made: history, model candidates, rules, diversity, pagination, the served log.

The hot path (`recommendations_serve`) per request:
  1. the customer's recent history from Redis (one round trip, `events.history`; from the database
     once when the cache has no entry for the customer), the scene's
     compiled rules and settings and the default model version (cached selectors);
  2. one call to TorchServe through the adapter's fast path, inside SERVING_TIME_BUDGET_MS;
  3. item metadata of the candidates (and of pinned items) in one cache `get_many`;
  4. the rules engine (pure Python): filters, boost/bury, pins, category cap, MMR;
  5. the full ranked list cached under its recommendation_id, so later pages are slices of the same
     list; the page served goes to the served log without blocking.
When the model cannot answer (TorchServe down or slow, no default version) the trending list of the
scene's fallback goes through the same rules, `source` says "fallback", and the event is counted.
Nothing on this path queries the database when the caches are warm.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from recadmin.core.errors import ValidationError
from recadmin.events.history import HistoryEntry, history_get, history_load
from recadmin.modelops.selectors import DefaultModel
from recadmin.rules import engine
from recadmin.rules.engine import Candidate, Context, RuleSet, SceneSettings
from recadmin.serving import fallbacks
from recadmin.serving.embeddings import embeddings_get
from recadmin.serving.items import items_metadata
from recadmin.serving.models import ServedEndpoint, ServedSource
from recadmin.serving.popular import popular_get
from recadmin.serving.served_log import kept_get, served_log_push
from recadmin.serving.state import NO_SCENE as _NO_SCENE
from recadmin.serving.state import HotState, SceneBundle, category_key, default_model, hot_state, scene_lookup

logger = logging.getLogger(__name__)

MAX_N = 100
# The full list cached per recommendation_id: at least this long (several pages of a usual n), and
# as long as the first request's offset + n. Later pages of the same id are slices of it; asking
# past its end gives a short or empty page rather than a different list.
LIST_LENGTH = 30
MAX_LIST_LENGTH = 500
MAX_K = 1000
LIST_TTL_SECONDS = 30 * 60
HISTORY_LIMIT = 50
_LIST_KEY = "serving:list:{}"


class _Fallback(Exception):  # control flow only: never leaves this module
    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


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
    items: list[dict[str, Any]]  # the whole list, each {"item","title","category","price","score","reasons","position"}
    offset: int = 0
    n: int = 10
    latency_ms: float = 0.0
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
        }


# --------------------------------------------------------------------------------------------
# Validation (400 naming the parameter)
# --------------------------------------------------------------------------------------------


def validate_n(value: Any, *, default: int = 10) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(str(value))
    except ValueError:
        raise ValidationError(f"n must be an integer from 1 to {MAX_N}, got {value!r}.", field="n") from None
    if not 1 <= n <= MAX_N:
        raise ValidationError(f"n must be from 1 to {MAX_N}, got {n}.", field="n")
    return n


def validate_offset(value: Any) -> int:
    if value is None or value == "":
        return 0
    try:
        offset = int(str(value))
    except ValueError:
        raise ValidationError(f"offset must be a non-negative integer, got {value!r}.", field="offset") from None
    if offset < 0:
        raise ValidationError(f"offset must not be negative, got {offset}.", field="offset")
    if offset >= MAX_LIST_LENGTH:
        raise ValidationError(f"offset must be below {MAX_LIST_LENGTH}, got {offset}.", field="offset")
    return offset


def scene_bundle(
    slug: str | None, *, now: dt.datetime | None = None, required: bool = True, state: HotState | None = None
) -> SceneBundle:
    """The scene's settings and compiled rules (cached by the rules app and in this process).
    400 naming `scene` for an unknown one."""
    if not slug:
        if required:
            raise ValidationError("scene is required (the placement's slug, e.g. home).", field="scene")
        return _NO_SCENE
    bundle = scene_lookup(slug, state or hot_state(), now or timezone.now())
    if bundle is None:
        raise ValidationError(f"Unknown scene {slug!r}.", field="scene")
    return bundle


def validate_category(slug: str | None, *, state: HotState | None = None) -> str | None:
    """400 naming `category` for a slug the catalog does not know. Cached; `state` has the cached
    answer when hot_state was asked for this slug (read in its round trip)."""
    if not slug:
        return None
    key = category_key(slug)
    if state is not None and state.category == slug:
        known = state.category_known
    else:
        try:
            known = cache.get(key)
        except Exception:  # noqa: BLE001
            known = None
    if known is None:
        from recadmin.catalog.models import Category

        known = Category.objects.filter(slug=slug).exists()
        with contextlib.suppress(Exception):
            cache.set(key, known, 300 if known else 30)
    if not known:
        raise ValidationError(f"Unknown category {slug!r}.", field="category")
    return slug


def validate_item(
    shop_id: str | None, *, field_name: str = "item", state: HotState | None = None
) -> dict[str, Any] | None:
    """The item's metadata (cached); 400 naming `field_name` for an id the catalog does not know."""
    if shop_id is None or shop_id == "":
        return None
    meta = items_metadata([shop_id], state=state.items if state else None).get(shop_id)
    if meta is None:
        raise ValidationError(f"Unknown item {shop_id!r}.", field=field_name)
    return meta


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


# What a Candidate takes from an item's metadata, per metadata dict: serving turns the same
# process-local dicts (serving.items) into ~150 candidates per request. Keyed by id() and holding
# the dict itself, so an id is never reused while its entry lives. Cleared when full: dicts read
# from Redis during warm-up are held here too, and the bound keeps that to tens of MB.
_CANDIDATE_FIELDS: dict[int, tuple[dict[str, Any], tuple[Any, ...]]] = {}
_CANDIDATE_FIELDS_MAX = 50_000


def _candidate_fields(meta: dict[str, Any]) -> tuple[Any, ...]:
    hit = _CANDIDATE_FIELDS.get(id(meta))
    if hit is not None and hit[0] is meta:
        return hit[1]
    path = meta.get("path")
    if path is None:
        path = tuple(p for p in (meta.get("category_path") or "").strip("/").split("/") if p)
    fields = (
        meta["item"],
        meta.get("category") or None,
        path,
        meta.get("brand") or "",
        meta.get("price"),
        bool(meta.get("in_stock", True)),
        bool(meta.get("is_active", True)),
        meta.get("attributes") or {},
    )
    if len(_CANDIDATE_FIELDS) >= _CANDIDATE_FIELDS_MAX:
        _CANDIDATE_FIELDS.clear()
    _CANDIDATE_FIELDS[id(meta)] = (meta, fields)
    return fields


def _to_candidate(
    meta: dict[str, Any], score: float, origin: str, embedding: np.ndarray | None = None
) -> Candidate:
    item_id, category, path, brand, price, in_stock, active, attributes = _candidate_fields(meta)
    return Candidate(
        item_id=item_id,
        score=float(score),
        category=category,
        category_path=path,
        brand=brand,
        price=price,
        in_stock=in_stock,
        active=active,
        attributes=attributes,
        embedding=embedding,
        origin=origin,
    )


def _pinned_ids(ruleset: RuleSet, now: dt.datetime) -> list[str]:
    ids: list[str] = []
    for rule in ruleset.rules:
        if rule.kind == engine.KIND_PIN and rule.is_active(now):
            ids.extend(rule.pinned_items)
    return ids


def _model_label(model: DefaultModel | None) -> str | None:
    return f"{model.name}:{model.version}" if model is not None else None


def _predict(model: DefaultModel, payload: dict[str, Any], *, started: float) -> list[tuple[str, float]]:
    """One call to TorchServe within what is left of the time budget; _Fallback on any failure."""
    from recadmin.modelops.torchserve import (
        PredictionRejected,
        TorchServeError,
        TorchServeTimeout,
        TorchServeUnavailable,
        get_client,
    )

    budget = settings.SERVING_TIME_BUDGET_MS / 1000.0
    # Whatever is left of the budget (1 ms at least: a kept-alive call cannot be faster than that).
    remaining = max(budget - (time.perf_counter() - started), 0.001)
    try:
        answer = get_client().predict_fast(model.name, payload, budget=remaining, version=str(model.version))
    except TorchServeTimeout as exc:
        raise _Fallback(fallbacks.REASON_TORCHSERVE_SLOW, exc.message) from exc
    except TorchServeUnavailable as exc:
        raise _Fallback(fallbacks.REASON_TORCHSERVE_DOWN, exc.message) from exc
    except (PredictionRejected, TorchServeError) as exc:
        raise _Fallback(fallbacks.REASON_TORCHSERVE_ERROR, exc.message) from exc
    except Exception as exc:  # never a 5xx for a valid request
        logger.exception("unexpected error calling TorchServe")
        raise _Fallback(fallbacks.REASON_TORCHSERVE_ERROR, repr(exc)) from exc
    if isinstance(answer, dict) and isinstance(answer.get("items"), list):
        answer = answer["items"]
    if not isinstance(answer, list):
        raise _Fallback(fallbacks.REASON_TORCHSERVE_ERROR, f"unexpected answer {str(answer)[:200]}")
    out: list[tuple[str, float]] = []
    for row in answer:
        if isinstance(row, dict) and "item" in row:
            out.append((str(row["item"]), float(row.get("score") or 0.0)))
    return out


def _fallback_scores(
    *, scene: SceneSettings, category: str | None, context_meta: dict[str, Any] | None, limit: int = MAX_K
) -> list[tuple[str, float]]:
    """The scene's fallback: trending in the requested or current item's category, then overall
    (at most `limit` candidates of each, as many as the model would have been asked for)."""
    slug = category
    if slug is None and scene.fallback == engine.FALLBACK_CATEGORY and context_meta is not None:
        slug = context_meta.get("category") or None
    ranked: list[tuple[str, float]] = []
    if slug:
        ranked = list(popular_get(category=slug)[:limit])
    overall = popular_get(category=None)[:limit]
    if slug:
        seen = {item for item, _ in ranked}
        # Category items first, then the overall list (scored below them) to fill the page.
        floor = min((s for _, s in ranked), default=0.0)
        ranked += [(item, min(s, floor) - 1e-6 * (i + 1)) for i, (item, s) in enumerate(overall) if item not in seen]
    else:
        ranked = list(overall)
    return ranked


def _history_ids(entries: Sequence[HistoryEntry]) -> tuple[list[str], dict[str, dt.datetime]]:
    """Oldest-first item ids for the model, and the latest purchase time per item."""
    ids = [e.item for e in reversed(entries)]
    purchases: dict[str, dt.datetime] = {}
    for entry in entries:
        if entry.type == "purchase" and entry.item not in purchases:
            purchases[entry.item] = dt.datetime.fromtimestamp(entry.ts, tz=dt.UTC)
    return ids, purchases


@dataclass
class _Built:
    items: list[dict[str, Any]]
    raw: list[dict[str, Any]]
    report: dict[str, Any]


def _rank(
    scored: Sequence[tuple[str, float]],
    *,
    origin: str,
    bundle: SceneBundle,
    context: Context,
    length: int,
    extra_reason: dict[str, Any] | None = None,
    want_raw: bool = False,
    embedding_version: int | None = None,
    state: HotState | None = None,
) -> _Built:
    now = context.now
    pinned = _pinned_ids(bundle.ruleset, now)
    metas = items_metadata([item for item, _ in scored] + pinned, state=state.items if state else None)
    vectors: dict[str, np.ndarray] = {}
    if bundle.settings.mmr_enabled and bundle.settings.mmr_lambda < 1.0 and embedding_version is not None:
        vectors = embeddings_get(version_id=embedding_version, shop_ids=[i for i, _ in scored if i in metas] + pinned)
    get_vector = vectors.get
    candidates = [
        _to_candidate(metas[item], score, origin, get_vector(item)) for item, score in scored if item in metas
    ]
    extras = tuple(_to_candidate(metas[i], 0.0, "pinned", get_vector(i)) for i in pinned if i in metas)
    ctx = Context(now=now, purchases=context.purchases, current_item=context.current_item, extra_candidates=extras)
    ranking = engine.apply_rules(candidates, bundle.ruleset, bundle.settings, ctx, n=length, offset=0)
    items = []
    for ranked in ranking.items:
        meta = metas.get(ranked.item_id, {})
        reasons = [dict(r) for r in ranked.reasons]
        if extra_reason is not None:
            reasons.insert(1, dict(extra_reason))
        items.append(
            {
                "item": ranked.item_id,
                "title": meta.get("title", ""),
                "category": meta.get("category") or None,
                "price": meta.get("price"),
                "score": round(float(ranked.score), 6) if ranked.score == ranked.score else None,
                "position": ranked.position,
                "reasons": reasons,
            }
        )
    raw: list[dict[str, Any]] = []
    if want_raw:
        for ranked in engine.raw_ranking(candidates, n=length):
            meta = metas.get(ranked.item_id, {})
            raw.append(
                {
                    "item": ranked.item_id,
                    "title": meta.get("title", ""),
                    "category": meta.get("category") or None,
                    "price": meta.get("price"),
                    "score": ranked.score,
                    "position": ranked.position,
                }
            )
    report = {
        "total_candidates": ranking.total_candidates,
        "removed": dict(ranking.removed),
        "capped": ranking.capped,
        "skipped_pins": list(ranking.skipped_pins),
        "applied_rules": list(ranking.applied_rules),
        "unknown_to_catalog": sum(1 for item, _ in scored if item not in metas),
    }
    return _Built(items=items, raw=raw, report=report)


def _model_list(
    model: DefaultModel | None,
    payload: dict[str, Any],
    *,
    refusal: str | None,
    started: float,
    scene: str | None,
    customer: str,
    failure: str,
    count: bool,
    **rank_kwargs: Any,
) -> tuple[_Built | None, str]:
    """The model's answer to `payload` through `_rank`, and "" ; or, when the request is refused
    (`refusal`, a fallback reason), there is no default model, or the model or the ranking fails,
    None and the fallback reason, logged and (`count`) counted; `failure` names what failed to rank."""
    try:
        if refusal:
            raise _Fallback(refusal)
        if model is None:
            raise _Fallback(fallbacks.REASON_NO_DEFAULT, "no default model version")
        scored = _predict(model, payload, started=started)
        if not scored:
            raise _Fallback(fallbacks.REASON_UNKNOWN_TO_MODEL)
        return _rank(scored, embedding_version=model.id, **rank_kwargs), ""
    except _Fallback as fallback:
        reason, detail = fallback.reason, fallback.detail
    except Exception as exc:  # a bug on the model path must cost the list, not the response
        logger.exception("serving: ranking %s failed", failure)
        reason, detail = fallbacks.REASON_INTERNAL, repr(exc)
    fallbacks.fallback_record(reason=reason, detail=detail, scene=scene or "", customer=customer, count=count)
    return None, reason


def _rank_or_plain(scored: Sequence[tuple[str, float]], *, origin: str, length: int, **kwargs: Any) -> _Built:
    """`_rank` for the lists that are the last resort (fallback, popular): when ranking them fails
    too (a bug in a rule, a cache returning garbage), the list goes out in popularity order without
    the scene's rules rather than as a 500. Only active catalog items, as far as the catalog answers."""
    try:
        return _rank(scored, origin=origin, length=length, **kwargs)
    except Exception:
        logger.exception("serving: ranking the %s list failed; serving it in popularity order", origin)
    try:
        metas: dict[str, dict[str, Any]] | None = items_metadata([item for item, _ in scored[: length * 4]])
    except Exception:  # noqa: BLE001 - catalog unreachable too: ids and scores are all there is
        metas = None
    items: list[dict[str, Any]] = []
    for item, score in scored:
        meta = metas.get(item) if metas is not None else {}
        if meta is None or not meta.get("is_active", True):
            continue
        items.append(
            {
                "item": item,
                "title": meta.get("title", ""),
                "category": meta.get("category") or None,
                "price": meta.get("price"),
                "score": round(float(score), 6),
                "position": len(items) + 1,
                "reasons": [{"type": origin, "score": round(float(score), 6)}, {"type": "rules_skipped"}],
            }
        )
        if len(items) >= length:
            break
    return _Built(items=items, raw=[], report={"rules_skipped": True})


def _new_id() -> str:
    return uuid.uuid4().hex


def _list_key(recommendation_id: str) -> str:
    return _LIST_KEY.format(recommendation_id)


def _cached_list(recommendation_id: str) -> dict[str, Any] | None:
    value = kept_get(_list_key(recommendation_id))
    return value if isinstance(value, dict) else None


def _log(served: ServedList, *, keep: bool = False) -> None:
    """Queue the page for the served log and, for a new list, keep the full list under its id and
    count it when it is a fallback (one round trip for all)."""
    page = served.page
    counter = keep and served.source == ServedSource.FALLBACK
    counted = served_log_push(
        incr_key=fallbacks.counter_key(served.fallback_reason) if counter else None,
        keep_key=_list_key(served.recommendation_id) if keep else None,
        keep_value=served.to_cache() if keep else None,
        keep_seconds=LIST_TTL_SECONDS,
        record={
            "recommendation_id": served.recommendation_id,
            "offset": served.offset,
            "endpoint": served.endpoint,
            "customer": served.customer,
            "scene": served.scene,
            "model_version_id": served.model_version_id,
            "model_label": served.model_version or "",
            "source": served.source,
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
                }
                for row in page
            ],
        }
    )
    if counter:
        fallbacks.fallback_counted(served.fallback_reason, counted)


def _list_length(n: int, offset: int) -> int:
    return min(max(offset + n, LIST_LENGTH), MAX_LIST_LENGTH)


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def _page_from_cache(recommendation_id: str, *, n: int, offset: int, started: float) -> ServedList | None:
    cached = _cached_list(recommendation_id)
    if cached is None:
        return None
    served = ServedList(**cached, offset=offset, n=n)
    served.latency_ms = (time.perf_counter() - started) * 1000
    _log(served)
    return served


def recommendations_build(
    *,
    customer: str,
    scene: str | None,
    n: int = 10,
    offset: int = 0,
    item: str | None = None,
    category: str | None = None,
    history: Sequence[str] | None = None,
    want_raw: bool = False,
    now: dt.datetime | None = None,
    bundle: SceneBundle | None = None,
    state: HotState | None = None,
    count_fallback: bool = True,
) -> ServedList:
    """Make a full list (not logged, not cached). `history` (oldest first) replaces the customer's
    own, for the admin preview. Raises ValidationError for bad parameters; never for a model failure.
    `count_fallback=False`: a fallback is logged but left to the caller to count (serving's _log)."""
    started = time.perf_counter()
    now = now or timezone.now()
    state = state or hot_state()
    bundle = bundle or scene_bundle(scene, now=now, state=state)
    context_meta = validate_item(item, state=state)
    category = validate_category(category, state=state)
    length = _list_length(n, offset)
    if history is None:
        try:
            if state.history is not None and state.history_customer == customer:
                entries = state.history  # read with the cache tokens, in the same round trip
            elif state.history_cold and state.history_customer == customer:
                # Not in the cache (flushed, expired, never recorded): the database has it; the load
                # writes it back, or a short "no events" marker, so this happens once per customer.
                entries = history_load(customer, HISTORY_LIMIT, known=state.history_found)
            else:
                entries = history_get(customer, HISTORY_LIMIT) if customer else []
        except Exception:  # Redis and the database down: serve as for a new customer rather than fail
            logger.warning("serving: history of %r unavailable", customer, exc_info=True)
            entries = []
        history_ids, purchases = _history_ids(entries)
    else:
        history_ids, purchases = list(history), {}
    model = default_model(state)
    model_history = [*history_ids, item] if item else history_ids
    exclude = [item] if item and bundle.settings.exclude_current_item else []
    context = Context(now=now, purchases=purchases, current_item=item)
    k = min(max(bundle.settings.candidates_wanted(length), length), MAX_K)
    if history_ids:
        payload: dict[str, Any] = {"history": model_history, "k": k, "exclude": exclude}
        origin, extra = "model", None
    else:
        # Only the current item to go on: its nearest items by the model's embeddings.
        payload = {"similar_to": item, "k": k}
        origin, extra = "similar", {"type": "similar_to", "item": item}
    built, reason = _model_list(
        model,
        payload,
        refusal=(
            fallbacks.REASON_SCENE_DISABLED
            if not bundle.enabled
            else fallbacks.REASON_COLD_START if not model_history else None
        ),
        started=started,
        scene=scene,
        customer=customer,
        failure="the model's candidates",
        count=count_fallback,
        origin=origin,
        bundle=bundle,
        context=context,
        length=length,
        extra_reason=extra,
        want_raw=want_raw,
        state=state,
    )
    source = ServedSource.MODEL if built is not None else ServedSource.FALLBACK
    if built is None:
        scored = _fallback_scores(scene=bundle.settings, category=category, context_meta=context_meta, limit=k)
        # The vectors live in the cache: a fallback list is diversified too, even with TorchServe down.
        built = _rank_or_plain(
            scored,
            origin="popular_fallback",
            bundle=bundle,
            context=context,
            length=length,
            want_raw=want_raw,
            embedding_version=model.id if model is not None else None,
            state=state,
        )
    model_used = model if source == ServedSource.MODEL else None
    return ServedList(
        recommendation_id=_new_id(),
        endpoint=ServedEndpoint.RECOMMENDATIONS,
        scene=scene or "",
        customer=customer,
        context_item=item or "",
        category=category or "",
        model_version=_model_label(model_used),
        model_version_id=model_used.id if model_used else None,
        source=source,
        fallback_reason=reason,
        items=built.items,
        offset=offset,
        n=n,
        latency_ms=(time.perf_counter() - started) * 1000,
        raw=built.raw,
        engine_report=built.report,
        history=list(history_ids),
    )


def recommendations_serve(
    *,
    customer: str,
    scene: str | None,
    n: int = 10,
    offset: int = 0,
    item: str | None = None,
    category: str | None = None,
    recommendation_id: str | None = None,
    bundle: SceneBundle | None = None,
    state: HotState | None = None,
) -> ServedList:
    """GET /api/v1/recommendations: a page of a new list, or of the cached list `recommendation_id`
    (the same list, so pages never repeat or skip items). An expired id gets a new list."""
    started = time.perf_counter()
    if recommendation_id:
        served = _page_from_cache(recommendation_id, n=n, offset=offset, started=started)
        if served is not None:
            return served
    served = recommendations_build(
        customer=customer,
        scene=scene,
        n=n,
        offset=offset,
        item=item,
        category=category,
        bundle=bundle,
        state=state,
        count_fallback=False,  # by _log, in the served-log round trip
    )
    served.latency_ms = (time.perf_counter() - started) * 1000
    _log(served, keep=True)
    return served


def similar_serve(
    *,
    item: str,
    scene: str | None = None,
    n: int = 10,
    offset: int = 0,
    recommendation_id: str | None = None,
    bundle: SceneBundle | None = None,
    state: HotState | None = None,
) -> ServedList:
    """GET /api/v1/items/<id>/similar: the model's nearest items, with the scene's rules."""
    started = time.perf_counter()
    if recommendation_id:
        served = _page_from_cache(recommendation_id, n=n, offset=offset, started=started)
        if served is not None:
            return served
    now = timezone.now()
    state = state or hot_state()
    bundle = bundle or scene_bundle(scene, now=now, required=False, state=state)
    context_meta = validate_item(item, state=state)
    length = _list_length(n, offset)
    model = default_model(state)
    context = Context(now=now, current_item=item)
    k = min(max(bundle.settings.candidates_wanted(length), length), MAX_K)
    built, reason = _model_list(
        model,
        {"similar_to": item, "k": k},
        refusal=fallbacks.REASON_SCENE_DISABLED if scene and not bundle.enabled else None,
        started=started,
        scene=scene,
        customer="",
        failure="similar items",
        count=False,  # by _log, in the served-log round trip
        origin="similar",
        bundle=bundle,
        context=context,
        length=length,
        extra_reason={"type": "similar_to", "item": item},
        state=state,
    )
    source = ServedSource.MODEL if built is not None else ServedSource.FALLBACK
    if built is None:
        settings_for_fallback = SceneSettings(
            **{**bundle.settings.to_dict(), "fallback": engine.FALLBACK_CATEGORY}
        )
        scored = _fallback_scores(scene=settings_for_fallback, category=None, context_meta=context_meta, limit=k)
        built = _rank_or_plain(
            scored,
            origin="popular_fallback",
            bundle=bundle,
            context=context,
            length=length,
            embedding_version=model.id if model is not None else None,
            state=state,
        )
    model_used = model if source == ServedSource.MODEL else None
    served = ServedList(
        recommendation_id=_new_id(),
        endpoint=ServedEndpoint.SIMILAR,
        scene=scene or "",
        customer="",
        context_item=item,
        category="",
        model_version=_model_label(model_used),
        model_version_id=model_used.id if model_used else None,
        source=source,
        fallback_reason=reason,
        items=built.items,
        offset=offset,
        n=n,
    )
    served.latency_ms = (time.perf_counter() - started) * 1000
    _log(served, keep=True)
    return served


def popular_serve(*, n: int = 10, offset: int = 0, category: str | None = None) -> ServedList:
    """GET /api/v1/popular: trending (time-decayed) in a category's subtree, or overall."""
    started = time.perf_counter()
    category = validate_category(category)
    length = _list_length(n, offset)
    scored = list(popular_get(category=category))
    built = _rank_or_plain(
        scored, origin="popular", bundle=_NO_SCENE, context=Context(now=timezone.now()), length=length
    )
    served = ServedList(
        recommendation_id=_new_id(),
        endpoint=ServedEndpoint.POPULAR,
        scene="",
        customer="",
        context_item="",
        category=category or "",
        model_version=None,
        model_version_id=None,
        source=ServedSource.POPULAR,
        fallback_reason="",
        items=built.items,
        offset=offset,
        n=n,
    )
    served.latency_ms = (time.perf_counter() - started) * 1000
    _log(served)
    return served


def parse_history(text: str) -> list[str]:
    """The admin preview's typed history: ids separated by commas, spaces or new lines, oldest first."""
    return [part for part in text.replace(",", " ").split() if part]


def items_known(shop_ids: Iterable[str]) -> set[str]:
    return set(items_metadata(shop_ids))
