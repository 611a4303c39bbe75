"""Readiness checks: each dependency answers within READYZ_CHECK_TIMEOUT or is reported as timed out.

Checks run in parallel threads, so `/readyz` answers in about one timeout even when Redis or the
database hangs. Core checks the database, Redis and this process's recent fallback rate; higher
apps add theirs with `readiness_check(name, fn, critical=False)` (modelops: TorchServe).

A critical check that fails makes the answer 503 ("unavailable": take the instance out of rotation);
a non-critical one makes it "degraded" with 200 (serving still answers, from the fallback lists).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from django.conf import settings

CheckResult = dict[str, Any]


@dataclass(frozen=True)
class Check:
    name: str
    fn: Callable[[float], CheckResult]
    critical: bool


_checks: dict[str, Check] = {}
# Threads outlive a hung check (a future cannot be cancelled once running); a few spare ones keep
# a second /readyz from queueing behind it.
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="recadmin-readyz")
_pool_lock = threading.Lock()


def readiness_check(name: str, fn: Callable[[float], CheckResult], *, critical: bool = True) -> None:
    """Register `fn(timeout_seconds) -> {"ok": bool, ...}`; it should bound its own I/O by the timeout."""
    _checks[name] = Check(name, fn, critical)


def readiness_checks() -> dict[str, Check]:
    return dict(_checks)


def _timed(check: Check, timeout: float) -> CheckResult:
    from django.db import close_old_connections

    started = time.perf_counter()
    close_old_connections()
    try:
        result = dict(check.fn(timeout))
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure as "down"
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result.setdefault("ms", round((time.perf_counter() - started) * 1000, 2))
    return result


def readiness_run(timeout: float | None = None) -> tuple[str, dict[str, CheckResult]]:
    timeout = float(settings.READYZ_CHECK_TIMEOUT if timeout is None else timeout)
    futures = {name: _pool.submit(_timed, check, timeout) for name, check in _checks.items()}
    deadline = time.monotonic() + timeout + 0.05
    results: dict[str, CheckResult] = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            results[name] = {"ok": False, "error": f"no answer within {timeout:g}s", "timeout": True}
    status = "ready"
    for name, result in results.items():
        if not result.get("ok"):
            if _checks[name].critical:
                return "unavailable", results
            status = "degraded"
        elif result.get("degraded"):
            status = "degraded"
    return status, results


# --- core's own checks ---------------------------------------------------------------------------


def check_database(timeout: float) -> CheckResult:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Bounded on the server too: a lock or a hung backend answers with an error in time.
            cursor.execute("SET statement_timeout = %s", [max(1, int(timeout * 1000))])
        cursor.execute("SELECT 1")
        cursor.fetchone()
        if connection.vendor == "postgresql":
            cursor.execute("SET statement_timeout = 0")
    return {"ok": True}


_redis_clients: dict[tuple[str, float], Any] = {}
_redis_lock = threading.Lock()


def _redis(url: str, timeout: float) -> Any:
    """A client of its own for the check: short socket timeouts and no retries (redis-py retries
    three times by default, which is how a 1 s timeout became a 15 s wait when Redis hung)."""
    with _redis_lock:
        client = _redis_clients.get((url, timeout))
        if client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client = _redis_clients[(url, timeout)] = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                health_check_interval=0,
            )
        return client


def check_redis(timeout: float) -> CheckResult:
    if not settings.REDIS_URL:
        return {"ok": True, "configured": False}
    from recadmin.core.redis_breaker import CLOSED, breaker_for_url

    breaker = breaker_for_url(settings.REDIS_URL)
    if breaker is not None and breaker.state != CLOSED:
        # Known down: answer at once; the breaker's probe notices the recovery.
        return {"ok": False, "configured": True, "circuit": breaker.state, "error": breaker.last_error}
    _redis(settings.REDIS_URL, timeout).ping()
    return {"ok": True, "configured": True}


def check_fallback_rate(timeout: float) -> CheckResult:
    from recadmin.core.observability.context import recent_answers

    window = int(settings.READYZ_FALLBACK_WINDOW_SECONDS)
    answers, fallbacks = recent_answers.rate(window)
    rate = fallbacks / answers if answers else 0.0
    return {
        "ok": True,
        "answers": answers,
        "fallbacks": fallbacks,
        "rate": round(rate, 4),
        "window_seconds": window,
        "degraded": answers >= 20 and rate > float(settings.READYZ_FALLBACK_RATE_DEGRADED),
        "scope": "this process",
    }


readiness_check("database", check_database, critical=True)
readiness_check("redis", check_redis, critical=True)
readiness_check("fallback_rate", check_fallback_rate, critical=False)
