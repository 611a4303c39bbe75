"""Candidate sources and the strategy chain that asks them in turn.

A source answers with scored candidates or says why it has none (`failure`): it never raises for
control flow. The chain (`chain_run`, the picture is gorse's recommender chain in server/rest.go)
asks each source of the strategy in order and keeps what each adds until the list can be filled;
a source that fails, times out or returns too few hands over to the next. Later sources' candidates
are scored below the earlier ones', so the rules engine still orders within each source while the
chain's order holds between sources.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from recadmin.events.selectors import CART_TYPES, VIEW_TYPES, complementary_items
from recadmin.modelops.selectors import DefaultModel
from recadmin.modelops.torchserve import history_request, ranked_answer, similar_request
from recadmin.rules import engine
from recadmin.rules.params import (
    SOURCE_COMPLEMENTARY,
    SOURCE_MODEL,
    SOURCE_POPULAR,
    SOURCE_RECENTLY_VIEWED,
    SOURCE_SIMILAR,
)
from recadmin.serving import fallbacks
from recadmin.serving.popular import popular_get
from recadmin.serving.services.context import RequestContext
from recadmin.serving.services.ranking import Scored

logger = logging.getLogger(__name__)

# Origins in the reasons: popular reached after an earlier source failed keeps its old name.
ORIGIN_POPULAR_FALLBACK = "popular_fallback"
# The serving path asks modelops for a re-sync when TorchServe does not know the default version,
# at most this often per process (the sync itself registers what is missing).
RESYNC_EVERY_SECONDS = 5.0
# A re-sync that failed (TorchServe's management API not answering yet: a restarted TorchServe opens
# its inference port a moment before it) may be asked again this soon, not a whole window later.
RESYNC_RETRY_SECONDS = 0.5


@dataclass
class SourceAnswer:
    scored: list[tuple[str, float]] = field(default_factory=list)
    failure: str = ""  # a fallbacks.REASON_* when the source has nothing
    detail: str = ""
    reason: dict[str, Any] | None = None  # added to each of its items' reasons
    model: DefaultModel | None = None  # the version that answered (model, similar)


# --- re-sync on "unknown version" ------------------------------------------------------------------

_resync = {"last": 0.0}
_resync_lock = threading.Lock()


def _resync_run() -> bool:
    """One re-sync; False when it could not be done (TorchServe not answering, an error)."""
    from django.db import connection

    from recadmin.core.errors import ServiceUnavailable
    from recadmin.modelops.services import models_sync_torchserve

    try:
        report = models_sync_torchserve()
        logger.info("serving: re-sync after an unknown version: %s", report.summary())
        return True
    except ServiceUnavailable as exc:  # expected for a moment while TorchServe starts: no traceback
        logger.warning("serving: re-sync after an unknown version: TorchServe not ready (%s)", exc)
        return False
    except Exception:
        logger.warning("serving: re-sync after an unknown version failed", exc_info=True)
        return False
    finally:
        connection.close()


def _resync_thread(run: Callable[[], bool | None], asked_at: float) -> None:
    ok = False
    try:
        ok = run() is not False
    finally:
        if not ok:
            with _resync_lock:
                if _resync["last"] == asked_at:  # no later request took the window meanwhile
                    _resync["last"] = asked_at - RESYNC_EVERY_SECONDS + RESYNC_RETRY_SECONDS


def resync_request(*, now: float | None = None, run: Callable[[], bool | None] | None = None) -> bool:
    """Ask for a TorchServe re-sync in the background; False when one was asked within RESYNC_EVERY_SECONDS
    (RESYNC_RETRY_SECONDS when that one failed)."""
    now = time.monotonic() if now is None else now
    with _resync_lock:
        if now - _resync["last"] < RESYNC_EVERY_SECONDS:
            return False
        _resync["last"] = now
    threading.Thread(
        target=_resync_thread, args=(run or _resync_run, now), name="torchserve-resync", daemon=True
    ).start()
    return True


# --- the sources -------------------------------------------------------------------------------


def _predict(ctx: RequestContext, model: DefaultModel, payload: dict[str, Any]) -> SourceAnswer:
    """One call to TorchServe within what is left of the time budget."""
    from recadmin.modelops.torchserve import (
        ModelNotRegistered,
        TorchServeError,
        TorchServeTimeout,
        TorchServeUnavailable,
        get_client,
    )

    budget = settings.SERVING_TIME_BUDGET_MS / 1000.0
    # Whatever is left of the budget (1 ms at least: a kept-alive call cannot be faster than that).
    remaining = max(budget - (time.perf_counter() - ctx.started), 0.001)
    try:
        answer = get_client().predict_fast(model.name, payload, budget=remaining, version=str(model.version))
    except TorchServeTimeout as exc:
        return SourceAnswer(failure=fallbacks.REASON_TORCHSERVE_SLOW, detail=exc.message)
    except TorchServeUnavailable as exc:
        return SourceAnswer(failure=fallbacks.REASON_TORCHSERVE_DOWN, detail=exc.message)
    except ModelNotRegistered as exc:
        # A restarted TorchServe comes back empty: ask for the registry's versions again.
        resync_request()
        return SourceAnswer(failure=fallbacks.REASON_TORCHSERVE_ERROR, detail=exc.message)
    except TorchServeError as exc:
        return SourceAnswer(failure=fallbacks.REASON_TORCHSERVE_ERROR, detail=exc.message)
    except Exception as exc:
        logger.exception("unexpected error calling TorchServe")
        return SourceAnswer(failure=fallbacks.REASON_TORCHSERVE_ERROR, detail=repr(exc))
    scored = ranked_answer(answer)
    if scored is None:
        return SourceAnswer(failure=fallbacks.REASON_TORCHSERVE_ERROR, detail=f"unexpected answer {str(answer)[:200]}")
    if not scored:
        return SourceAnswer(failure=fallbacks.REASON_UNKNOWN_TO_MODEL)
    return SourceAnswer(scored=scored, model=model)


def source_model(ctx: RequestContext) -> SourceAnswer:
    """The model (the default version, or the experiment variant's) over the customer's history."""
    if ctx.model is None:
        return SourceAnswer(failure=fallbacks.REASON_NO_DEFAULT, detail="no default model version")
    history = ctx.history_ids
    if not history:
        if ctx.item and SOURCE_SIMILAR not in ctx.strategy:
            # Only the current item to go on: its nearest items by the model's embeddings.
            answer = _predict(ctx, ctx.model, similar_request(ctx.item, k=ctx.k))
            answer.reason = {"type": "similar_to", "item": ctx.item}
            return answer
        return SourceAnswer(failure=fallbacks.REASON_COLD_START)
    model_history = [*history, ctx.item] if ctx.item else list(history)
    exclude = [ctx.item] if ctx.item and ctx.bundle.settings.exclude_current_item else []
    return _predict(ctx, ctx.model, history_request(model_history, k=ctx.k, exclude=exclude))


def source_similar(ctx: RequestContext) -> SourceAnswer:
    """The items nearest to the current item by the model's item embeddings."""
    if not ctx.item:
        return SourceAnswer(failure=fallbacks.REASON_NO_ITEM)
    if ctx.model is None:
        return SourceAnswer(failure=fallbacks.REASON_NO_DEFAULT, detail="no default model version")
    answer = _predict(ctx, ctx.model, similar_request(ctx.item, k=ctx.k))
    answer.reason = {"type": "similar_to", "item": ctx.item}
    return answer


def source_complementary(ctx: RequestContext) -> SourceAnswer:
    """Bought together with / bought after the cart's items, else the current item, else what the
    customer last put in a cart."""
    anchors = list(ctx.cart) or ([ctx.item] if ctx.item else ctx.history.recent(CART_TYPES, limit=5))
    if not anchors:
        return SourceAnswer(failure=fallbacks.REASON_NO_ITEM)
    scored = complementary_items(anchors, limit=ctx.k)
    if not scored:
        return SourceAnswer(failure=fallbacks.REASON_NO_COMPLEMENTS)
    return SourceAnswer(scored=scored, reason={"type": "complements", "items": anchors[:5]})


def source_popular(ctx: RequestContext) -> SourceAnswer:
    """Trending in the requested or the current item's category (its brand first), then overall."""
    slug = ctx.category
    meta = ctx.item_meta
    if (
        slug is None
        and meta is not None
        and (ctx.bundle.settings.fallback == engine.FALLBACK_CATEGORY or ctx.endpoint == "similar")
    ):
        slug = meta.get("category") or None
    limit = ctx.k
    ranked: list[tuple[str, float]] = []
    if slug:
        from recadmin.catalog.metadata import category_items

        ranked = list(popular_get(category=slug)[:limit])
        seen = {item for item, _ in ranked}
        # A category without events yet (a new shop section): its own items, so a new item's
        # neighbours are of its kind rather than the overall best-sellers.
        if len(ranked) < limit:
            floor = min((s for _, s in ranked), default=0.0)
            fill = [i for i in category_items(slug, limit=limit) if i not in seen]
            ranked += [(item, floor - 1e-6 * (j + 1)) for j, item in enumerate(fill)]
        if meta is not None and meta.get("brand"):
            # The current item's brand first within its category (stable: trend order otherwise).
            brand = meta["brand"]
            from recadmin.catalog.selectors import items_metadata

            metas = items_metadata([i for i, _ in ranked], state=ctx.state.items)
            same = [pair for pair in ranked if (metas.get(pair[0]) or {}).get("brand") == brand]
            if same:
                others = [pair for pair in ranked if (metas.get(pair[0]) or {}).get("brand") != brand]
                ranked = _descending([p[0] for p in same + others])
    overall = popular_get(category=None)[:limit]
    if ranked:
        seen = {item for item, _ in ranked}
        # Category items first, then the overall list (scored below them) to fill the page.
        floor = min((s for _, s in ranked), default=0.0)
        ranked += [(item, min(s, floor) - 1e-6 * (i + 1)) for i, (item, s) in enumerate(overall) if item not in seen]
    else:
        ranked = list(overall)
    if not ranked:
        return SourceAnswer(failure=fallbacks.REASON_NO_CANDIDATES)
    return SourceAnswer(scored=ranked)


def _descending(items: list[str]) -> list[tuple[str, float]]:
    """Scores for an order decided other than by score: 1, 1/2, 1/3... (a rank score, descending)."""
    return [(item, round(1.0 / (i + 1), 6)) for i, item in enumerate(items)]


def source_recently_viewed(ctx: RequestContext) -> SourceAnswer:
    """The customer's own recent items (continue shopping), newest first; the current item left out."""
    items = [i for i in ctx.history.recent(VIEW_TYPES, limit=ctx.k + 1) if i != ctx.item][: ctx.k]
    if not items:
        return SourceAnswer(failure=fallbacks.REASON_COLD_START)
    return SourceAnswer(scored=_descending(items), reason={"type": "recently_viewed"})


SOURCES: dict[str, Callable[[RequestContext], SourceAnswer]] = {
    SOURCE_MODEL: source_model,
    SOURCE_SIMILAR: source_similar,
    SOURCE_COMPLEMENTARY: source_complementary,
    SOURCE_POPULAR: source_popular,
    SOURCE_RECENTLY_VIEWED: source_recently_viewed,
}


# --- the chain ---------------------------------------------------------------------------------


@dataclass
class ChainResult:
    scored: list[Scored]
    source: str  # the source that produced the head of the list, or "fallback"
    fallback_reason: str  # why the strategy's first source gave nothing ("" when it did)
    fallback_detail: str
    model: DefaultModel | None  # the version that produced candidates, if any
    used: list[str]  # the sources that contributed, in order


def chain_run(ctx: RequestContext) -> ChainResult:
    """Ask the strategy's sources in order until the list can be filled (ctx.length candidates)."""
    pool: list[Scored] = []
    # Never the current item nor what is already in the cart.
    seen: set[str] = set(ctx.cart) | ({ctx.item} if ctx.item else set())
    used: list[str] = []
    first_failure, detail = "", ""
    model: DefaultModel | None = None
    strategy = ctx.strategy
    if not ctx.bundle.enabled:
        first_failure, strategy = fallbacks.REASON_SCENE_DISABLED, (SOURCE_POPULAR,)
    for name in strategy:
        answer = SOURCES[name](ctx)
        if answer.failure:
            if not pool and not first_failure:
                first_failure, detail = answer.failure, answer.detail
            continue
        origin = name
        if name == SOURCE_POPULAR and (first_failure or pool):
            origin = ORIGIN_POPULAR_FALLBACK
        floor = min((s.score for s in pool), default=None)
        size = len(pool)
        for i, (item, score) in enumerate(answer.scored):
            if item in seen:
                continue
            seen.add(item)
            if floor is not None:
                # Below everything an earlier source gave: the chain's order holds between sources.
                score = min(score, floor) - 1e-6 * (i + 1)
            pool.append(Scored(item, score, origin, answer.reason))
        if len(pool) > size:
            used.append(name)
            if answer.model is not None and model is None:
                model = answer.model
        if len(pool) >= ctx.length:
            break
    head = used[0] if used else None
    fell_back = head is None or (head == SOURCE_POPULAR and (bool(first_failure) or strategy[0] != SOURCE_POPULAR))
    reason = (first_failure or fallbacks.REASON_NO_CANDIDATES) if fell_back else ""
    if fell_back:
        fallbacks.fallback_record(reason=reason, detail=detail, scene=ctx.scene, customer=ctx.customer, count=False)
    return ChainResult(
        scored=pool,
        source="fallback" if fell_back else str(head),
        fallback_reason=reason,
        fallback_detail=detail if fell_back else "",
        model=model,
        used=used,
    )
