"""Request ids, structured and redacted logs, and the /metrics endpoint."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from prometheus_client import REGISTRY

from recadmin.core.observability.logs import JsonFormatter, RedactFilter, RequestIdFilter


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """What the configured console handler (settings.LOGGING: filters and formatter) writes."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    buffer = io.StringIO()
    previous = handler.setStream(buffer)  # type: ignore[attr-defined]
    yield buffer
    handler.setStream(previous)  # type: ignore[attr-defined]


def _scene() -> None:
    """A scene and a customer with history, and no default model: the list falls back for a failure
    reason (no_default_model), which is logged and counted."""
    from recadmin.events.services import events_ingest
    from recadmin.rules.models import Scene
    from tests.factories import ItemFactory

    Scene.objects.get_or_create(slug="home", defaults={"name": "Home"})
    ItemFactory(shop_id="sku-h")
    row = {"customer": "c-1", "item": "sku-h", "type": "view", "occurred_at": "2026-11-24T10:00:00Z"}
    assert events_ingest(payload=[row]).stored == 1


# --- request ids -------------------------------------------------------------------------------


def test_a_sane_incoming_request_id_is_kept_and_returned() -> None:
    response = Client().get("/healthz", HTTP_X_REQUEST_ID="checkout-7f3a:42")
    assert response["X-Request-ID"] == "checkout-7f3a:42"


@pytest.mark.parametrize("given", ["", "has space", 'quote"d', "x" * 300, "new\nline"])
def test_an_absent_or_insane_request_id_is_replaced_by_a_new_one(given: str) -> None:
    response = Client().get("/healthz", HTTP_X_REQUEST_ID=given)
    assert response["X-Request-ID"] != given and len(response["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_every_log_line_of_a_request_carries_its_request_id(
    api_client: Any, captured_logs: io.StringIO, settings: Any
) -> None:
    _scene()
    # No default model: the list falls back (a warning line), and an unknown scene is a 400 (another).
    api_client.get("/api/v1/recommendations", {"customer": "c-1", "scene": "home"}, HTTP_X_REQUEST_ID="rid-1")
    api_client.get("/api/v1/recommendations", {"scene": "nope"}, HTTP_X_REQUEST_ID="rid-2")
    lines = [line for line in captured_logs.getvalue().splitlines() if line.strip()]
    first = [line for line in lines if "serving fell back" in line]
    second = [line for line in lines if "Bad Request" in line]
    assert first and second, lines
    assert all("[rid-1]" in line for line in first) and all("[rid-2]" in line for line in second)


def test_a_celery_task_logs_with_its_task_id(captured_logs: io.StringIO) -> None:
    from celery import shared_task

    @shared_task(name="tests.log_something")
    def log_something() -> None:
        logging.getLogger("recadmin.test").warning("inside the task")

    result = log_something.apply()
    line = next(line for line in captured_logs.getvalue().splitlines() if "inside the task" in line)
    assert f"[task-{result.id}]" in line


# --- no secrets in logs --------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_api_key_or_password_reaches_the_log(api_client: Any, captured_logs: io.StringIO) -> None:
    from recadmin.core.services import api_key_create

    key = api_key_create(name="leaky", scopes=["ingest"]).raw_key
    password = "Sup3r-secret-pass!"
    client = Client()
    # Real requests: a valid key, a forged key, an admin login with a wrong password.
    client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Bearer {key}")
    client.get("/api/v1/models", HTTP_AUTHORIZATION="Bearer rk_forged_0123456789abcdef")
    client.post("/admin/login/", {"username": "admin", "password": password})
    # And what careless code could log: headers, a form body, a URL, an exception message.
    log = logging.getLogger("recadmin.test")
    log.warning("headers %s", {"HTTP_AUTHORIZATION": f"Bearer {key}"})
    log.warning("body username=admin&password=%s", password)
    log.warning('json {"password": "%s"}', password)
    log.warning("connecting to postgres://recadmin:%s@db:5432/recadmin", password)
    log.warning("Authorization: Token %s", key)
    try:
        raise ValueError(f"bad key {key}")
    except ValueError:
        log.exception("failed")
    text = captured_logs.getvalue()
    assert "failed" in text and "Traceback" in text and "bad key rk_[redacted]" in text
    assert key not in text and key.split("_", 2)[2] not in text
    assert "rk_forged_0123456789abcdef" not in text
    assert password not in text


def test_json_lines_have_the_message_level_and_request_id() -> None:
    from recadmin.core.observability.context import request_id_reset, request_id_set

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactFilter())
    log = logging.getLogger("recadmin.test.json")
    log.addHandler(handler)
    log.propagate = False
    token = request_id_set("rid-json")
    try:
        log.warning("key %s seen", "rk_abcdef123456", extra={"request": "<GET '/x?password=hunter22'>"})
    finally:
        request_id_reset(token)
        log.removeHandler(handler)
        log.propagate = True
    record = json.loads(buffer.getvalue().splitlines()[0])
    assert record["message"] == "key rk_[redacted] seen"
    assert record["level"] == "WARNING" and record["logger"] == "recadmin.test.json"
    assert record["request_id"] == "rid-json" and "time" in record
    assert "hunter22" not in buffer.getvalue() and record["request"] == "<GET '/x?password=[redacted]'>"


# --- /metrics ---------------------------------------------------------------------------------------


def test_metrics_answers_loopback_only_by_default(settings: Any) -> None:
    settings.METRICS_ALLOWED_NETWORKS = []
    settings.METRICS_BEARER_TOKEN = None
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200
    refused = Client(REMOTE_ADDR="10.1.2.3").get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert refused.status_code == 403 and "loopback" in refused.json()["message"]


def test_metrics_allows_configured_networks_and_a_bearer_token(settings: Any) -> None:
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    settings.METRICS_BEARER_TOKEN = "s3cret-scrape-token"
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    outsider = Client(REMOTE_ADDR="192.0.2.9")
    assert outsider.get("/metrics").status_code == 401
    assert outsider.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    answer = outsider.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/plain")


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.django_db
def test_a_recommendation_is_observed_with_its_route_scene_source_and_fallback_reason(api_client: Any) -> None:
    _scene()
    labels = {"route": "recommendations", "method": "GET", "status": "200", "scene": "home", "source": "fallback"}
    before = _value("recadmin_http_request_duration_seconds_count", **labels)
    fallbacks = _value("recadmin_fallbacks_total", reason="no_default_model", route="recommendations")
    assert api_client.get("/api/v1/recommendations", {"customer": "c-1", "scene": "home"}).status_code == 200
    assert _value("recadmin_http_request_duration_seconds_count", **labels) == before + 1
    assert _value("recadmin_fallbacks_total", reason="no_default_model", route="recommendations") == fallbacks + 1
    text = Client().get("/metrics").content.decode()
    assert "recadmin_http_request_duration_seconds_bucket{" in text and 'scene="home"' in text


@pytest.mark.django_db
def test_events_are_counted_per_type_stored_and_rejected(api_client: Any) -> None:
    from tests.factories import ItemFactory

    ItemFactory(shop_id="sku-1")
    stored = _value("recadmin_events_ingested_total", type="purchase")
    bad_type = _value("recadmin_events_rejected_total", type="invalid", field="type")
    bad_item = _value("recadmin_events_rejected_total", type="view", field="item")
    rows = [
        {"customer": "c-1", "item": "sku-1", "type": "purchase", "occurred_at": "2026-11-24T10:00:00Z"},
        {"customer": "c-1", "item": "sku-1", "type": "teleport", "occurred_at": "2026-11-24T10:00:00Z"},
        {"customer": "c-1", "item": "sku-404", "type": "view", "occurred_at": "2026-11-24T10:00:00Z"},
    ]
    assert api_client.post("/api/v1/events", rows, format="json").status_code == 207
    assert _value("recadmin_events_ingested_total", type="purchase") == stored + 1
    assert _value("recadmin_events_rejected_total", type="invalid", field="type") == bad_type + 1
    assert _value("recadmin_events_rejected_total", type="view", field="item") == bad_item + 1


@pytest.mark.django_db
def test_scrape_time_gauges_come_from_the_registry_and_the_served_log() -> None:
    from recadmin.modelops.models import ModelVersion, TrainingRun
    from recadmin.serving.served_log import served_log_drain, served_log_push

    served_log_drain()  # what earlier tests served
    ModelVersion.objects.create(name="recommender", version=4, kind="pop", status="default")
    TrainingRun.objects.create(kind="pop", status="failed")
    served_log_push(record={"recommendation_id": "x", "items": [], "created_at": "2026-01-01T00:00:00+00:00"})
    try:
        text = Client().get("/metrics").content.decode()
    finally:
        served_log_drain()
    assert 'recadmin_default_model_version{kind="pop",name="recommender"} 4.0' in text
    assert 'recadmin_training_runs{kind="pop",status="failed"} 1.0' in text
    assert "recadmin_served_log_backlog 1.0" in text
    age = next(line for line in text.splitlines() if line.startswith("recadmin_served_log_oldest_age_seconds "))
    assert float(age.split()[1]) > 86400  # served on 1 January, not drained since


def test_the_per_request_overhead_is_a_few_microseconds() -> None:
    """Printed, not a timed goal: bench/observability.py measures it in multiprocess mode too."""
    import time

    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.urls import resolve

    from recadmin.core.observability.middleware import ObservabilityMiddleware

    request = RequestFactory().get("/api/v1/popular")
    request.resolver_match = resolve("/api/v1/popular")
    response = HttpResponse()

    def bare(_: Any) -> HttpResponse:
        return response

    wrapped = ObservabilityMiddleware(bare)
    n = 20000
    for fn in (bare, wrapped):
        fn(request)
    started = time.perf_counter()
    for _ in range(n):
        bare(request)
    base = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(n):
        wrapped(request)
    with_mw = time.perf_counter() - started
    overhead_us = (with_mw - base) / n * 1e6
    print(f"\nobservability middleware: {overhead_us:.1f} µs per request (single-process registry)")
    assert overhead_us < 500
