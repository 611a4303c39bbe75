"""One request context: everything a list needs, read once (hot state, scene, experiment, history, item).

`context_build` is the only place that reads: the cache tokens and the customer's history in one
round trip (serving.state), the scene's bundle, the experiment running on the scene and the
customer's variant (pure CPU while warm), the current item's metadata (catalog selector) and the
history (events selector). The sources and the ranking then work on this object only.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.utils import timezone

from recadmin.catalog.selectors import category_exists, items_metadata
from recadmin.core.errors import ValidationError
from recadmin.events.selectors import CustomerHistory, customer_history
from recadmin.experiments.assignment import RunningExperiment, VariantSpec
from recadmin.experiments.selectors import experiment_running_for_scene
from recadmin.modelops.selectors import DefaultModel, model_name_resolve, serving_model_get
from recadmin.modelops.torchserve import MAX_K
from recadmin.rules.engine import Context
from recadmin.serving.services.lists import list_length
from recadmin.serving.state import NO_SCENE, HotState, SceneBundle, default_model, hot_state, scene_lookup
from recadmin.serving.strategy import strategy_select

HISTORY_LIMIT = 50


@dataclass(frozen=True)
class ListQuery:
    """A request's validated parameters (the view's input serializer, or the admin preview)."""

    endpoint: str
    customer: str = ""
    scene: str | None = None
    item: str | None = None
    category: str | None = None
    n: int | None = None
    offset: int = 0
    recommendation_id: str | None = None
    cart: tuple[str, ...] = ()
    history: Sequence[str] | None = None  # the preview's typed history (oldest first)


@dataclass
class RequestContext:
    endpoint: str
    started: float
    now: dt.datetime
    state: HotState
    customer: str
    scene: str
    bundle: SceneBundle
    strategy: tuple[str, ...]
    n: int
    offset: int
    length: int
    k: int
    item: str | None
    item_meta: dict[str, Any] | None
    category: str | None
    cart: tuple[str, ...]
    history: CustomerHistory
    history_ids: list[str]
    model: DefaultModel | None
    experiment: RunningExperiment | None = None
    variant: VariantSpec | None = None
    want_raw: bool = False

    @property
    def engine_context(self) -> Context:
        return Context(now=self.now, purchases=self.history.purchases, current_item=self.item)


def scene_bundle(slug: str | None, *, state: HotState, now: dt.datetime, required: bool = True) -> SceneBundle:
    """The scene's settings and compiled rules (cached); 400 naming `scene` for an unknown one."""
    if not slug:
        if required:
            raise ValidationError("scene is required (the placement's slug, e.g. home).", field="scene")
        return NO_SCENE
    bundle = scene_lookup(slug, state, now)
    if bundle is None:
        raise ValidationError(f"Unknown scene {slug!r}.", field="scene")
    return bundle


def validate_category(slug: str | None, *, state: HotState | None = None) -> str | None:
    """400 naming `category` for a slug the catalog does not know (cached; `state` carries the
    cache's answer when hot_state read it)."""
    if not slug:
        return None
    cached = state.category_known if state is not None and state.category == slug else None
    if not category_exists(slug, cached=cached):
        raise ValidationError(f"Unknown category {slug!r}.", field="category")
    return slug


def validate_item(
    shop_id: str | None, *, field_name: str = "item", state: HotState | None = None
) -> dict[str, Any] | None:
    """The item's metadata (catalog selector); 400 naming `field_name` for an id the catalog does not know."""
    if shop_id is None or shop_id == "":
        return None
    meta = items_metadata([shop_id], state=state.items if state else None).get(shop_id)
    if meta is None:
        raise ValidationError(f"Unknown item {shop_id!r}.", field=field_name)
    return meta


def context_build(query: ListQuery, *, state: HotState | None = None, want_raw: bool = False) -> RequestContext:
    """The request's context; ValidationError (400 naming the field) for bad parameters."""
    now = timezone.now()
    similar = query.endpoint == "similar"
    if state is None:
        state = hot_state(
            customer=query.customer if query.history is None else "",
            history_limit=HISTORY_LIMIT,
            # Its cached check rides the same round trip (an over-long one is refused by validation).
            category=query.category if query.category and len(query.category) <= 100 else None,
        )
    # TorchServe's time budget counts from here: the round trip above is the view's, as before strategies.
    started = time.perf_counter()
    bundle = scene_bundle(query.scene, state=state, now=now, required=not similar)
    item_meta = validate_item(query.item, state=state)
    category = validate_category(query.category, state=state)
    model = default_model(state)
    experiment: RunningExperiment | None = None
    if query.scene and query.customer and not similar and query.history is None:
        experiment = experiment_running_for_scene(query.scene, version=state.experiments_version)
    selection = strategy_select(bundle.settings, experiment=experiment, customer=query.customer, similar=similar)
    if selection.settings is not bundle.settings:
        bundle = replace(bundle, settings=selection.settings)
    if selection.model_version is not None:
        name, version = selection.model_version
        model = (
            serving_model_get(name=name or (model.name if model else model_name_resolve()), version=version) or model
        )
    strategy = selection.strategy
    variant = selection.variant
    if variant is None:
        experiment = None
    n = query.n if query.n is not None else bundle.settings.default_n
    length = list_length(n, query.offset)
    if query.history is not None:
        history = CustomerHistory(read_from="preview")
        history_ids = list(query.history)
    else:
        history = customer_history(query.customer, HISTORY_LIMIT, prefetched=state.history)
        history_ids = history.item_ids
    return RequestContext(
        endpoint=query.endpoint,
        started=started,
        now=now,
        state=state,
        customer=query.customer,
        scene=query.scene or "",
        bundle=bundle,
        strategy=strategy,
        n=n,
        offset=query.offset,
        length=length,
        k=min(max(bundle.settings.candidates_wanted(length), length), MAX_K),
        item=query.item or None,
        item_meta=item_meta,
        category=category,
        cart=tuple(query.cart),
        history=history,
        history_ids=history_ids,
        model=model,
        experiment=experiment,
        variant=variant,
        want_raw=want_raw,
    )
