from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

from recadmin.core.models import ApiKey


def test_healthz_answers_without_touching_the_database() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_database_and_redis(settings) -> None:  # type: ignore[no-untyped-def]
    response = Client().get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["configured"] is bool(settings.REDIS_URL)


@pytest.mark.django_db
def test_readyz_is_503_when_redis_does_not_answer(settings) -> None:  # type: ignore[no-untyped-def]
    from django.core.cache import caches

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }
    try:
        response = Client().get("/readyz")
    finally:
        caches["default"].close()
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False


@pytest.mark.django_db
def test_create_api_key_prints_a_working_key_once(capsys) -> None:  # type: ignore[no-untyped-def]
    call_command("create_api_key", "deploy-bot", "--scopes", "ingest,manage")
    raw = capsys.readouterr().out.strip()
    key = ApiKey.objects.get(name="deploy-bot")
    assert sorted(key.scopes) == ["ingest", "manage"]
    assert raw.startswith(f"rk_{key.prefix}_")


def test_schema_and_docs_are_public() -> None:
    assert Client().get("/api/docs/").status_code == 200


@pytest.fixture
def hung_server():  # type: ignore[no-untyped-def]
    """A TCP server that accepts connections and never answers: what a paused (CLIENT PAUSE) or
    stopped-but-listening Redis looks like to a client."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.django_db
def test_readyz_answers_within_its_timeout_when_redis_hangs(settings, hung_server) -> None:  # type: ignore[no-untyped-def]
    import time

    settings.REDIS_URL = f"redis://127.0.0.1:{hung_server}/0"
    settings.READYZ_CHECK_TIMEOUT = 0.5
    started = time.monotonic()
    response = Client().get("/readyz")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    redis = response.json()["checks"]["redis"]
    assert redis["ok"] is False and "Timeout" in redis.get("error", "") + str(redis.get("timeout", ""))
    assert elapsed < 2.0, f"/readyz took {elapsed:.1f}s with a hung Redis"


@pytest.mark.django_db
def test_readyz_is_degraded_not_down_when_the_model_server_does_not_answer(settings) -> None:  # type: ignore[no-untyped-def]
    from recadmin.modelops.torchserve import free_port

    settings.TORCHSERVE_INFERENCE_URL = f"http://127.0.0.1:{free_port()}"
    response = Client().get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["torchserve"]["ok"] is False and "/ping" in body["checks"]["torchserve"]["error"]


@pytest.mark.django_db
def test_readyz_reports_the_recent_fallback_rate_of_this_process(settings) -> None:  # type: ignore[no-untyped-def]
    from recadmin.core.observability.context import recent_answers

    recent_answers.clear()
    try:
        for i in range(40):
            recent_answers.add(fallback=i % 4 != 0)  # 30 of 40 failed to reach the model
        settings.READYZ_FALLBACK_RATE_DEGRADED = 0.5
        checks = Client().get("/readyz").json()["checks"]
        assert checks["fallback_rate"]["answers"] == 40 and checks["fallback_rate"]["rate"] == 0.75
        assert checks["fallback_rate"]["degraded"] is True
    finally:
        recent_answers.clear()
