from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process is up and answering. Touches nothing else."""
    return JsonResponse({"status": "ok"})


def _check_database() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure as "down"
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 2)}


def _check_redis() -> dict[str, Any]:
    if not settings.REDIS_URL:
        return {"ok": True, "configured": False}
    started = time.perf_counter()
    try:
        from django_redis import get_redis_connection

        get_redis_connection("default").ping()
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "configured": True, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "configured": True, "ms": round((time.perf_counter() - started) * 1000, 2)}


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database and Redis (when configured) answer. 503 otherwise."""
    checks = {"database": _check_database(), "redis": _check_redis()}
    ready = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
