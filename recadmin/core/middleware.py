"""Guards in front of every view: oversized API bodies get a JSON 413 before anything reads them, and a
database outage outside DRF views (DRF's exception handler covers those) gets a JSON 503 with
Retry-After instead of Django's HTML 500."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from recadmin.core.exception_handler import database_unavailable, retry_after_seconds
from recadmin.core.parsers import text_problem

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"


def body_too_large(limit: int) -> JsonResponse:
    return JsonResponse(
        {
            "message": f"Request body too large: at most {limit} bytes.",
            "extra": {"fields": {"body": [f"At most {limit} bytes."]}, "max_bytes": limit},
        },
        status=413,
    )


def _bad_url_text(request: HttpRequest) -> tuple[str, str] | None:
    """A NUL (or a lone surrogate) in the path or a query parameter: the database cannot compare it."""
    problem = text_problem(request.path)
    if problem:
        return "path", problem
    for name, values in request.GET.lists():
        problem = text_problem(name)
        if problem:
            return "query", problem
        for value in values:
            problem = text_problem(value)
            if problem:
                return name, problem
    return None


class GuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if limit is not None and length > limit:
                return body_too_large(limit)
            bad = _bad_url_text(request)
            if bad is not None:
                return JsonResponse(
                    {"message": f"{bad[0]}: {bad[1]}", "extra": {"fields": {bad[0]: [bad[1]]}}}, status=400
                )
            response = self.get_response(request)
            if response.status_code == 404 and not response.get("Content-Type", "").startswith("application/json"):
                # No route matched (Django's HTML page): API clients get the API's error shape.
                return JsonResponse({"message": "Not found.", "extra": {}}, status=404)
            return response
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.warning("database unavailable: %s: %s", type(exception).__name__, str(exception).strip()[:200])
        error = database_unavailable()
        response = JsonResponse({"message": error.message, "extra": error.extra}, status=503)
        response["Retry-After"] = str(retry_after_seconds())
        return response
