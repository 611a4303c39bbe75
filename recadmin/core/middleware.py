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
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.warning("database unavailable: %s: %s", type(exception).__name__, str(exception).strip()[:200])
        error = database_unavailable()
        response = JsonResponse({"message": error.message, "extra": error.extra}, status=503)
        response["Retry-After"] = str(retry_after_seconds())
        return response
