"""Warm what the first recommendation request needs, when a web worker starts (issue 11: the first
request after a start took 3.2-3.5 s against a 150 ms budget).

Run by gunicorn's `post_worker_init` (recadmin/gunicorn_conf.py) in the worker's main thread, before
it accepts requests: the URL resolver and the views' imports, the database and cache connections,
the hot state and every scene's bundle, the running experiments, the trending lists and their
items' metadata in this process, and TorchServe's kept-alive connection with one small prediction.
Each step is bounded and may fail (a start must never depend on it); the timings are logged.
`SERVING_WARM_UP=false` turns it off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


def _step(timings: dict[str, float], name: str, func: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        return func()
    except Exception as exc:  # noqa: BLE001 - warming is best effort: the request path copes without it
        logger.info("serving warm-up: %s skipped (%s)", name, exc)
        return None
    finally:
        timings[name] = round((time.perf_counter() - started) * 1000, 1)


def serving_warm_up() -> dict[str, float]:
    """Warm this process for serving; returns {step: milliseconds}."""
    from django.conf import settings

    timings: dict[str, float] = {}
    if not getattr(settings, "SERVING_WARM_UP", True):
        return timings
    total = time.perf_counter()

    def urls() -> None:
        from django.urls import get_resolver

        get_resolver().resolve("/api/v1/recommendations")
        import recadmin.serving.apis  # noqa: F401 - the view module and everything it imports

    def database() -> None:
        from django.db import connection

        connection.ensure_connection()

    def state_and_scenes() -> int:
        from django.utils import timezone

        from recadmin.rules.models import Scene
        from recadmin.serving.state import default_model, hot_state, scene_lookup

        state = hot_state()
        default_model(state)
        slugs = list(Scene.objects.values_list("slug", flat=True)[:200])
        for slug in slugs:
            scene_lookup(slug, state, timezone.now())
        from recadmin.experiments.selectors import running_experiments

        running_experiments(version=state.experiments_version)
        return len(slugs)

    def trending() -> list[str]:
        from recadmin.catalog.selectors import items_metadata
        from recadmin.serving.popular import popular_get

        top = [item for item, _ in popular_get(category=None)[:500]]
        items_metadata(top)
        return top

    _step(timings, "urls", urls)
    _step(timings, "database", database)
    _step(timings, "state_and_scenes", state_and_scenes)
    top = _step(timings, "trending", trending) or []

    def torchserve() -> None:
        from recadmin.modelops.torchserve import get_client, similar_request
        from recadmin.serving.state import default_model, hot_state

        model = default_model(hot_state())
        if model is None or not top:
            return
        get_client().predict_fast(model.name, similar_request(top[0], k=10), budget=2.0, version=str(model.version))

    _step(timings, "torchserve", torchserve)
    timings["total"] = round((time.perf_counter() - total) * 1000, 1)
    logger.info("serving warm-up done in %.0f ms: %s", timings["total"], timings)
    return timings
