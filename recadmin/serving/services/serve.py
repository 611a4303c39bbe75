"""The entry points: a page of a new list, or of a cached one; similar items; trending items."""

from __future__ import annotations

import time
from collections.abc import Iterable

from django.utils import timezone

from recadmin.catalog.selectors import items_metadata
from recadmin.rules.engine import Context
from recadmin.rules.params import SOURCE_SIMILAR
from recadmin.serving.models import ServedEndpoint, ServedSource
from recadmin.serving.popular import popular_get
from recadmin.serving.services.context import ListQuery, RequestContext, context_build, scene_bundle, validate_category
from recadmin.serving.services.lists import (
    ServedList,
    cached_list,
    list_length,
    new_recommendation_id,
    served_log,
)
from recadmin.serving.services.rank_stage import rank_stage
from recadmin.serving.services.ranking import Scored, rank_or_plain
from recadmin.serving.services.sources import chain_run
from recadmin.serving.state import NO_SCENE, hot_state


def _label(model: object) -> str | None:
    return f"{model.name}:{model.version}" if model is not None else None  # type: ignore[attr-defined]


def list_build(ctx: RequestContext) -> ServedList:
    """Run the strategy's chain, then the rules and diversity, into a full list (not logged)."""
    chain = chain_run(ctx)
    embedding = chain.model or ctx.model
    staged = rank_stage(ctx, chain.scored)
    built = rank_or_plain(
        staged.scored,
        bundle=ctx.bundle,
        context=ctx.engine_context,
        length=ctx.length,
        want_raw=ctx.want_raw,
        # The vectors live in the cache: a fallback list is diversified too, even with TorchServe down.
        embedding_version=embedding.id if embedding is not None else None,
        items_state=ctx.state.items,
    )
    if ctx.bundle.settings.rank_by:
        built.report["rank"] = {
            "by": ctx.bundle.settings.rank_by,
            "ranker": _label(staged.model),
            # The list keeps the retrieval order when the ranker could not answer, and says why.
            "skipped": staged.note,
        }
    model_used = chain.model if chain.source != ServedSource.FALLBACK else None
    source = chain.source
    if ctx.endpoint == ServedEndpoint.SIMILAR and source == SOURCE_SIMILAR:
        source = ServedSource.MODEL  # the endpoint's documented value: the model's embeddings answered
    return ServedList(
        recommendation_id=new_recommendation_id(),
        endpoint=ctx.endpoint,
        scene=ctx.scene,
        customer=ctx.customer,
        context_item=ctx.item or "",
        category=ctx.category or "",
        model_version=_label(model_used),
        model_version_id=model_used.id if model_used is not None else None,
        source=source,
        fallback_reason=chain.fallback_reason,
        items=built.items,
        offset=ctx.offset,
        n=ctx.n,
        latency_ms=(time.perf_counter() - ctx.started) * 1000,
        strategy=ctx.strategy,
        experiment={"id": ctx.experiment.id, "name": ctx.experiment.name} if ctx.experiment else None,
        variant={"id": ctx.variant.id, "name": ctx.variant.name} if ctx.variant else None,
        raw=built.raw,
        engine_report=built.report,
        history=list(ctx.history_ids),
    )


def _page_from_cache(recommendation_id: str, *, n: int, offset: int, started: float) -> ServedList | None:
    cached = cached_list(recommendation_id)
    if cached is None:
        return None
    served = ServedList.from_cache(cached, offset=offset, n=n)
    served.latency_ms = (time.perf_counter() - started) * 1000
    served_log(served)
    return served


def list_serve(query: ListQuery) -> ServedList:
    """GET /api/v1/recommendations and /items/<id>/similar: a page of a new list, or of the cached
    list `recommendation_id` (the same list, so pages never repeat or skip items). An expired id
    gets a new list."""
    started = time.perf_counter()
    if query.recommendation_id:
        # A later page is a slice of the cached list: it needs the tokens (scene, default n), not the history.
        state = hot_state()
        bundle = scene_bundle(query.scene, state=state, now=timezone.now(), required=query.endpoint != "similar")
        n = query.n if query.n is not None else bundle.settings.default_n
        served = _page_from_cache(query.recommendation_id, n=n, offset=query.offset, started=started)
        if served is not None:
            return served
    ctx = context_build(query)
    served = list_build(ctx)
    served.latency_ms = (time.perf_counter() - started) * 1000
    served_log(served, keep=True)
    return served


def recommendations_build(
    *,
    customer: str,
    scene: str | None,
    n: int = 10,
    offset: int = 0,
    item: str | None = None,
    category: str | None = None,
    history: Iterable[str] | None = None,
    want_raw: bool = False,
) -> ServedList:
    """A full list, not logged nor cached (the admin preview). `history` (oldest first) replaces the
    customer's own. Raises ValidationError for bad parameters; never for a model failure."""
    query = ListQuery(
        endpoint=ServedEndpoint.RECOMMENDATIONS,
        customer=customer,
        scene=scene,
        item=item,
        category=category,
        n=n,
        offset=offset,
        history=list(history) if history is not None else None,
    )
    return list_build(context_build(query, want_raw=want_raw))


def recommendations_serve(
    *,
    customer: str,
    scene: str | None,
    n: int | None = None,
    offset: int = 0,
    item: str | None = None,
    category: str | None = None,
    recommendation_id: str | None = None,
    cart: Iterable[str] = (),
) -> ServedList:
    return list_serve(
        ListQuery(
            endpoint=ServedEndpoint.RECOMMENDATIONS,
            customer=customer,
            scene=scene,
            item=item,
            category=category,
            n=n,
            offset=offset,
            recommendation_id=recommendation_id,
            cart=tuple(cart),
        )
    )


def similar_serve(
    *, item: str, scene: str | None = None, n: int | None = None, offset: int = 0, recommendation_id: str | None = None
) -> ServedList:
    """GET /api/v1/items/<id>/similar: the model's nearest items, then the item's category."""
    return list_serve(
        ListQuery(
            endpoint=ServedEndpoint.SIMILAR,
            scene=scene,
            item=item,
            n=n,
            offset=offset,
            recommendation_id=recommendation_id,
        )
    )


def popular_serve(*, n: int = 10, offset: int = 0, category: str | None = None) -> ServedList:
    """GET /api/v1/popular: trending (time-decayed) in a category's subtree, or overall."""
    started = time.perf_counter()
    category = validate_category(category)
    length = list_length(n, offset)
    scored = [Scored(item, score, "popular") for item, score in popular_get(category=category)]
    built = rank_or_plain(scored, bundle=NO_SCENE, context=Context(now=timezone.now()), length=length)
    served = ServedList(
        recommendation_id=new_recommendation_id(),
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
        strategy=("popular",),
    )
    served.latency_ms = (time.perf_counter() - started) * 1000
    served_log(served)
    return served


def parse_history(text: str) -> list[str]:
    """The admin preview's typed history: ids separated by commas, spaces or new lines, oldest first."""
    return [part for part in text.replace(",", " ").split() if part]


def items_known(shop_ids: Iterable[str]) -> set[str]:
    return set(items_metadata(shop_ids))
