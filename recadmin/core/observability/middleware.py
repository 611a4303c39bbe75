"""One middleware, first in the stack: the request id and the request's latency observation."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from recadmin.core.observability.context import (
    LABELS_ATTR,
    recent_answers,
    request_id_from_header,
    request_id_set,
)
from recadmin.core.observability.metrics import FALLBACKS, HTTP_REQUEST_SECONDS

HEADER = "X-Request-ID"
# Not worth a histogram series: probes and the scrape itself.
_SKIP_ROUTES = frozenset({"metrics", "healthz"})


class ObservabilityMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.max_length = int(getattr(settings, "REQUEST_ID_MAX_LENGTH", 128))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        request_id = request_id_from_header(request.META.get("HTTP_X_REQUEST_ID"), max_length=self.max_length)
        request.request_id = request_id  # type: ignore[attr-defined]
        # Not reset when the middleware returns: Django logs a 4xx/5xx ("Bad Request: ...") after the
        # middleware chain; the request_finished signal clears it (request_ended below).
        request_id_set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        self._observe(request, response.status_code, time.perf_counter() - started)
        return response

    # Label children by their values: prometheus-client's labels() takes a lock and builds a tuple
    # on every call; a dict lookup does not.
    _children: dict[tuple[str, str, str, str, str], Any] = {}

    @classmethod
    def _histogram(cls, key: tuple[str, str, str, str, str]) -> Any:
        child = cls._children.get(key)
        if child is None:
            child = cls._children[key] = HTTP_REQUEST_SECONDS.labels(*key)
        return child

    @classmethod
    def _observe(cls, request: HttpRequest, status: int, seconds: float) -> None:
        match = request.resolver_match
        route = (match.url_name or match.route or "unnamed") if match is not None else "unmatched"
        if route in _SKIP_ROUTES:
            return
        labels = getattr(request, LABELS_ATTR, None)
        method = request.method or ""
        if labels:
            source = labels.get("source", "")
            cls._histogram((route, method, str(status), labels.get("scene", ""), source)).observe(seconds)
            if source:
                reason = labels.get("fallback_reason", "")
                recent_answers.add(fallback=bool(labels.get("failure")))
                if reason:
                    FALLBACKS.labels(reason, route).inc()
            return
        cls._histogram((route, method, str(status), "", "")).observe(seconds)


def request_ended(**kwargs: object) -> None:
    """request_finished receiver: lines logged between requests carry no stale id."""
    request_id_set("-")
