"""Redis hung (CLIENT PAUSE) and Redis stopped, against a real redis-server of the test's own (never
the shared one): readiness answers within its timeout, acknowledged events are stored, recommendation
requests get a 200. The latencies are printed: bench/faults.py reports them under load, and the Redis
circuit breaker (a later change) is what brings them down."""

from __future__ import annotations

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
    """The cache (history, served log, API keys) on `url`, with the deployment's 1 s socket timeouts."""
    settings.REDIS_URL = url
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "faults",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
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
        {"event_id": f"{prefix}-{i}", "customer": f"c-{i}", "item": "sku-1", "type": "view",
         "occurred_at": "2026-11-24T10:00:00Z"}
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
    print(f"\nRedis paused: /readyz {ready_s * 1000:.0f} ms, ingest {ingest_s * 1000:.0f} ms, "
          f"recommendations {rec_s * 1000:.0f} ms")
    assert ready.status_code == 503 and ready_s < 1.5
    assert ready.json()["checks"]["redis"]["ok"] is False
    assert status == 200 and Event.objects.filter(event_id__startswith="paused-").count() == 5
    assert rec.status_code == 200


def test_with_redis_stopped_events_are_stored_and_lists_are_served(tmp_path: Path, settings: Any,
                                                                  api_client: Any) -> None:
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
    print(f"\nRedis stopped: /readyz {ready_s * 1000:.0f} ms, ingest {ingest_s * 1000:.0f} ms, "
          f"recommendations {rec_s * 1000:.0f} ms")
    assert ready.status_code == 503 and ready_s < 1.5
    assert status == 200 and Event.objects.filter(event_id__startswith="stopped-").count() == 5
    assert rec.status_code == 200 and rec.json()["source"] == "fallback"
