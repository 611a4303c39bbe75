"""Redis hung (CLIENT PAUSE) and Redis stopped, against a real redis-server of the test's own (never
the shared one): readiness answers within its timeout, acknowledged events are stored, recommendation
requests get a 200. With the Redis circuit breaker (recadmin.core.redis_breaker) requests answer
within the bound while Redis is down or hung, each change of the circuit's state is one log line,
and the served pages of the outage reach the served log once Redis is back. The latencies are
printed; bench/faults.py reports them under load."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.test import Client

from recadmin.events.models import Event
from tests.fixtures.services import private_redis

pytestmark = [pytest.mark.faults, pytest.mark.django_db]


def _use_redis(settings: Any, url: str) -> None:
    """The cache (history, served log, API keys) on `url`, configured as a deployment's."""
    from recadmin.core.redis_breaker import breakers_reset

    breakers_reset()
    settings.REDIS_URL = url
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "faults",
            "OPTIONS": dict(settings.REDIS_CACHE_OPTIONS),
        }
    }
    settings.READYZ_CHECK_TIMEOUT = 0.5


@pytest.fixture
def redis_url(tmp_path: Path, settings: Any) -> Iterator[str]:
    with private_redis(tmp_path / "redis") as url:
        _use_redis(settings, url)
        try:
            yield url
        finally:
            caches["default"].close()


def _shop() -> None:
    from recadmin.rules.models import Scene
    from tests.factories import ItemFactory

    Scene.objects.create(slug="home", name="Home")
    ItemFactory(shop_id="sku-1")


def _events(api_client: Any, prefix: str) -> tuple[int, float]:
    rows = [
        {
            "event_id": f"{prefix}-{i}",
            "customer": f"c-{i}",
            "item": "sku-1",
            "type": "view",
            "occurred_at": "2026-11-24T10:00:00Z",
        }
        for i in range(5)
    ]
    started = time.monotonic()
    status = api_client.post("/api/v1/events", rows, format="json").status_code
    return status, time.monotonic() - started


def _timed(fn: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


def test_with_redis_paused_readiness_is_bounded_and_acknowledged_events_are_stored(
    redis_url: str, api_client: Any
) -> None:
    import redis

    _shop()
    Client().get("/healthz")  # the first request imports the URLconf: seconds on a loaded machine
    redis.Redis.from_url(redis_url).execute_command("CLIENT", "PAUSE", 6000, "ALL")
    ready, ready_s = _timed(lambda: Client().get("/readyz"))
    status, ingest_s = _events(api_client, "paused")
    rec, rec_s = _timed(lambda: api_client.get("/api/v1/recommendations", {"customer": "c-1", "scene": "home"}))
    print(
        f"\nRedis paused: /readyz {ready_s * 1000:.0f} ms, ingest {ingest_s * 1000:.0f} ms, "
        f"recommendations {rec_s * 1000:.0f} ms"
    )
    assert ready.status_code == 503 and ready_s < 1.5
    assert ready.json()["checks"]["redis"]["ok"] is False
    assert status == 200 and Event.objects.filter(event_id__startswith="paused-").count() == 5
    assert rec.status_code == 200


def test_with_redis_stopped_events_are_stored_and_lists_are_served(
    tmp_path: Path, settings: Any, api_client: Any
) -> None:
    with private_redis(tmp_path / "redis") as url:
        _use_redis(settings, url)
        _shop()
    # The private Redis is gone now: connections are refused.
    Client().get("/healthz")
    try:
        ready, ready_s = _timed(lambda: Client().get("/readyz"))
        status, ingest_s = _events(api_client, "stopped")
        rec, rec_s = _timed(lambda: api_client.get("/api/v1/recommendations", {"customer": "c-1", "scene": "home"}))
    finally:
        caches["default"].close()
    print(
        f"\nRedis stopped: /readyz {ready_s * 1000:.0f} ms, ingest {ingest_s * 1000:.0f} ms, "
        f"recommendations {rec_s * 1000:.0f} ms"
    )
    assert ready.status_code == 503 and ready_s < 1.5
    assert status == 200 and Event.objects.filter(event_id__startswith="stopped-").count() == 5
    assert rec.status_code == 200 and rec.json()["source"] == "fallback"


# --- the circuit breaker ---------------------------------------------------------------------------

FAST = 0.05  # what a cache call may cost while Redis is down or hung
# A whole request does more than cache calls (database, JSON); on a loaded 2-core machine it gets
# this much, still far below one socket timeout.
REQUEST_BOUND = 0.3
# One request may meet a pause of the machine itself (the bound for the slowest answer only): what
# the breaker prevents slows every request by a socket timeout at least, which the others catch.
STALL_BOUND = 1.5


def _breaker_lines(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "recadmin.core.redis_breaker"]


# Serving's own line for a failed history read belongs to the serving path (its database fallback is
# a change of its own), and its rate-limited "fell back (no_default_model)" line is about this test's
# shop having no model; every other warning during the outage must be the breaker's.
_NOT_OURS = {"recadmin.serving.services", "recadmin.serving.fallback"}


def _warnings(caplog: Any) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name not in _NOT_OURS
    ]


def _traffic(api_client: Any, rounds: int, prefix: str) -> list[tuple[str, int, float, str]]:
    """Readiness, ingestion and recommendations, `rounds` times: (what, status, seconds, detail) each;
    the detail of a readiness answer is its per-check breakdown (which check was slow, if one was)."""
    answers = []
    probe = Client()  # one client: a new one loads the middleware (~20 ms) on its first request
    for i in range(rounds):
        ready, ready_s = _timed(lambda: probe.get("/readyz"))
        answers.append(("readyz", ready.status_code, ready_s, ready.content.decode()[:400]))
        status, ingest_s = _events(api_client, f"{prefix}{i}")
        answers.append(("events", status, ingest_s, ""))
        rec, rec_s = _timed(lambda: api_client.get("/api/v1/recommendations", {"customer": "c-1", "scene": "home"}))
        answers.append(("recommendations", rec.status_code, rec_s, ""))
    return answers


def _assert_fast(answers: list[tuple[str, int, float, str]]) -> None:
    """Every request but the slowest within REQUEST_BOUND, the slowest within STALL_BOUND.

    What the breaker prevents (a socket timeout or a retry per cache call) slows every request the
    same way; one stray pause of a loaded CI machine (the other test worker training a model, a
    garbage collection) slows one, which is why CI once saw a single /readyz at 991 ms among 60
    answers of about 30 ms."""
    slowest = sorted(answers, key=lambda answer: -answer[2])
    assert slowest[0][2] < STALL_BOUND, slowest[:3]
    assert slowest[1][2] < REQUEST_BOUND, slowest[:5]


def _wait_closed(seconds: float) -> bool:
    """Keep calling the cache (as traffic would: a call past the probe interval starts the probe)
    until the circuit is closed."""
    from django.conf import settings
    from django.core.cache import cache

    from recadmin.core.redis_breaker import CLOSED, breaker_for_url

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cache.get("anything")
        breaker = breaker_for_url(settings.REDIS_URL)
        if breaker is not None and breaker.state == CLOSED:
            return True
        time.sleep(0.05)
    return False


def test_with_redis_paused_requests_fail_fast_one_line_per_change_and_served_pages_are_kept(
    redis_url: str, api_client: Any, caplog: Any
) -> None:
    import redis
    from django.core.cache import cache

    from recadmin.serving.models import ServedRecommendation
    from recadmin.serving.served_log import served_log_drain

    _shop()
    Client().get("/healthz")
    api_client.get("/api/v1/recommendations", {"customer": "c-1", "scene": "home"})  # warm: URLconf, key
    served_log_drain()
    served_before = ServedRecommendation.objects.count()
    caplog.set_level(logging.INFO)
    caplog.clear()

    redis.Redis.from_url(redis_url).execute_command("CLIENT", "PAUSE", 4000, "ALL")
    paused_at = time.monotonic()
    # The call that finds Redis hung waits one socket timeout, then opens the circuit.
    _, trip_s = _timed(lambda: cache.get("anything"))
    answers = _traffic(api_client, 10, "paused")
    _, get_s = _timed(lambda: cache.get("anything"))
    _, set_s = _timed(lambda: cache.set("anything", 1))
    assert time.monotonic() - paused_at < 4.0, ("the traffic must run while Redis is still paused", answers)
    worst = max(answer[2] for answer in answers)
    print(
        f"\nRedis paused: trip {trip_s * 1000:.0f} ms, worst request {worst * 1000:.0f} ms, "
        f"cache get {get_s * 1000:.2f} ms, set {set_s * 1000:.2f} ms"
    )
    assert get_s < FAST and set_s < FAST
    _assert_fast(answers)
    assert {what: code for what, code, _, _ in answers} == {"readyz": 503, "events": 200, "recommendations": 200}
    assert Event.objects.filter(event_id__startswith="paused").count() == 50

    assert _wait_closed(10.0), "the probe must close the circuit once Redis answers"
    # Redis is back: the next pages push what the outage kept locally to the shared list.
    api_client.get("/api/v1/recommendations", {"customer": "c-1", "scene": "home"})
    assert Client().get("/readyz").status_code == 200
    served_log_drain()
    assert ServedRecommendation.objects.count() - served_before == 11

    lines = _breaker_lines(caplog)
    assert len(lines) == 2, lines
    assert "open" in lines[0] and "closed" in lines[1]
    assert _warnings(caplog) == [f"recadmin.core.redis_breaker: {line}" for line in lines], _warnings(caplog)


def test_with_redis_stopped_requests_fail_fast_with_one_log_line(
    tmp_path: Path, settings: Any, api_client: Any, caplog: Any
) -> None:
    from django.core.cache import cache

    from recadmin.serving.models import ServedRecommendation
    from recadmin.serving.served_log import served_log_backlog, served_log_drain

    with private_redis(tmp_path / "redis") as url:
        _use_redis(settings, url)
        _shop()
        Client().get("/healthz")
        api_client.get("/api/v1/recommendations", {"customer": "c-1", "scene": "home"})
        served_log_drain()
    served_before = ServedRecommendation.objects.count()
    caplog.set_level(logging.INFO)
    caplog.clear()
    try:
        _, trip_s = _timed(lambda: cache.get("anything"))  # refused: opens the circuit at once
        answers = _traffic(api_client, 20, "stopped")
        _, get_s = _timed(lambda: cache.get_many(["a", "b"]))
        backlog = served_log_backlog()
    finally:
        caches["default"].close()
    worst = max(answer[2] for answer in answers)
    print(
        f"\nRedis stopped: trip {trip_s * 1000:.1f} ms, worst request {worst * 1000:.0f} ms, "
        f"cache get_many {get_s * 1000:.2f} ms"
    )
    assert get_s < FAST and trip_s < 1.0
    _assert_fast(answers)
    assert {what: code for what, code, _, _ in answers} == {"readyz": 503, "events": 200, "recommendations": 200}
    assert Event.objects.filter(event_id__startswith="stopped").count() == 100
    # The pages served meanwhile wait in this process's buffer (or were written when it filled).
    assert backlog + ServedRecommendation.objects.count() - served_before == 20
    served_log_drain()
    assert ServedRecommendation.objects.count() - served_before == 20
    lines = _breaker_lines(caplog)
    assert len(lines) == 1 and "open" in lines[0], lines
    assert _warnings(caplog) == [f"recadmin.core.redis_breaker: {lines[0]}"], _warnings(caplog)
