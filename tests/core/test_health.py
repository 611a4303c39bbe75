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
