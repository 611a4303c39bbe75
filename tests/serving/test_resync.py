"""Issue 10: when TorchServe answers that the default version is unknown (it was restarted empty),
serving asks modelops for a re-sync, at most once per RESYNC_EVERY_SECONDS per process; and a failed
history read in the request's round trip is answered by the database, not treated as a new customer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from recadmin.modelops.models import ModelKind, ModelVersion, ModelVersionStatus
from recadmin.modelops.selectors import default_cache_key
from recadmin.rules.models import Scene
from recadmin.serving.services import sources
from tests.modelops.test_torchserve_fast_path import CannedServer, server  # noqa: F401 - the canned server fixture
from tests.serving.conftest import ingest, sku

pytestmark = [pytest.mark.django_db]

URL = "/api/v1/recommendations"


def not_found() -> bytes:
    data = json.dumps({"code": 404, "type": "ModelNotFoundException", "message": "Model not found: recommender"})
    return f"HTTP/1.1 404 Not Found\r\nContent-Length: {len(data)}\r\n\r\n{data}".encode()


@pytest.fixture
def unknown_version(server: CannedServer, shop: Any, settings: Any, tmp_path: Path) -> Iterator[list[float]]:  # noqa: F811
    url = f"http://127.0.0.1:{server.port}"
    settings.TORCHSERVE_INFERENCE_URL = settings.TORCHSERVE_MANAGEMENT_URL = url
    settings.TORCHSERVE_TOKEN_AUTH = False
    settings.TORCHSERVE_KEY_FILE = str(tmp_path / "key_file.json")
    settings.SERVING_TIME_BUDGET_MS = 2000
    ModelVersion.objects.create(
        name="recommender",
        version=1,
        kind=ModelKind.POP,
        archive_path="x.mar",
        status=ModelVersionStatus.DEFAULT,
        promoted_at=timezone.now(),
    )
    cache.delete(default_cache_key("recommender"))
    server.answers = [(not_found(), "keep") for _ in range(10)]
    runs: list[float] = []
    done = threading.Event()

    def run() -> None:
        runs.append(1.0)
        done.set()

    sources._resync["last"] = 0.0
    original = sources._resync_run
    sources._resync_run = run  # type: ignore[assignment]
    yield runs
    sources._resync_run = original  # type: ignore[assignment]
    sources._resync["last"] = 0.0


def test_an_unknown_default_version_asks_for_one_resync(api_client: APIClient, unknown_version: list[float]) -> None:
    ingest("c-1", [sku(1), sku(2)])

    bodies = [api_client.get(URL, {"scene": "home", "customer": "c-1", "n": 3}).json() for _ in range(3)]

    assert [b["source"] for b in bodies] == ["fallback"] * 3
    assert unknown_version == [1.0]  # three requests within the window: one re-sync


def test_resync_requests_are_rate_limited_per_process() -> None:
    started: list[int] = []
    sources._resync["last"] = 0.0
    try:
        asked = [
            sources.resync_request(now=t, run=lambda: started.append(1)) for t in (100.0, 101.0, 104.9, 105.1, 106.0)
        ]
    finally:
        sources._resync["last"] = 0.0

    assert asked == [True, False, False, True, False]


def test_a_failed_resync_may_be_asked_again_soon() -> None:
    """A restarted TorchServe answers on its inference port a moment before its management API: the
    re-sync asked then fails, and the next request must not wait a whole window for another."""
    import time

    sources._resync["last"] = 0.0
    try:
        assert sources.resync_request(now=100.0, run=lambda: False)
        for _ in range(200):  # the failed run frees the window in its thread
            if sources._resync["last"] != 100.0:
                break
            time.sleep(0.01)
        retry = 100.0 + sources.RESYNC_RETRY_SECONDS
        asked = [sources.resync_request(now=t, run=lambda: None) for t in (retry - 0.1, retry + 0.01, retry + 1.0)]
    finally:
        sources._resync["last"] = 0.0

    assert asked == [False, True, False]  # and a successful one holds the whole window again


def test_a_failed_history_round_trip_reads_the_database(
    api_client: APIClient, shop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    Scene.objects.create(slug="continue", name="Continue", strategy=["recently_viewed", "popular"])
    ingest("c-out", [sku(4), sku(8)])
    from recadmin.events import selectors
    from recadmin.serving import state

    def failed_round_trip(keys: list[str], customer: str, limit: int) -> Any:
        raise ConnectionError("Redis is down")

    def no_cache_read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the history was read from the cache after its round trip failed")

    monkeypatch.setattr(state, "_read", failed_round_trip)
    if state._uses_redis():
        monkeypatch.setattr(selectors, "history_get", no_cache_read)

    body = api_client.get(URL, {"scene": "continue", "customer": "c-out", "n": 2}).json()

    assert body["source"] == "recently_viewed"
    assert [row["item"] for row in body["items"]] == [sku(8), sku(4)]
