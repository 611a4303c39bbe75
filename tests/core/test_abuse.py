"""Abuse: the admin login locks out (django-axes), API keys are rate-limited (429 + Retry-After, with
Redis, without it, and with Redis down), bodies are bounded (413, deep nesting, rows counted while
parsing), and NUL bytes / garbage in paths and query parameters get a 4xx, never a 500."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.exceptions import ParseError
from rest_framework.test import APIClient

from recadmin.core.errors import ValidationError
from recadmin.core.parsers import PayloadTooLarge, SafeJSONParser
from recadmin.core.services import api_key_create
from recadmin.modelops.torchserve import free_port
from tests.conftest import clear_cache
from tests.factories import ItemFactory

pytestmark = pytest.mark.django_db


# --- admin login -----------------------------------------------------------------------------------


def test_the_admin_login_locks_out_after_repeated_failures(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    get_user_model().objects.create_superuser("admin", "a@example.com", "right-password-123")
    client = Client()
    for _ in range(3):
        failed = client.post("/admin/login/", {"username": "admin", "password": "wrong"})
        assert failed.status_code in (200, 429)
    locked = client.post("/admin/login/?next=/admin/", {"username": "admin", "password": "right-password-123"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # Another username from the same address is not locked: one admin cannot lock out another.
    get_user_model().objects.create_superuser("other", "o@example.com", "other-password-123")
    ok = client.post("/admin/login/?next=/admin/", {"username": "other", "password": "other-password-123"})
    assert ok.status_code == 302


def test_a_successful_login_resets_the_failure_count(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    get_user_model().objects.create_superuser("admin", "a@example.com", "right-password-123")
    client = Client()
    for _ in range(2):
        client.post("/admin/login/", {"username": "admin", "password": "wrong"})
    assert client.post("/admin/login/", {"username": "admin", "password": "right-password-123"}).status_code == 302


# --- API key rate limits ---------------------------------------------------------------------------


def _client_with_limit(rate_limit: str) -> APIClient:
    created = api_key_create(name="limited", scopes=["ingest", "recommend", "manage"], rate_limit=rate_limit)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created.raw_key}")
    return client


def _until_limited(client: APIClient, tries: int) -> tuple[list[int], Any]:
    codes, last = [], None
    for _ in range(tries):
        last = client.get("/api/v1/items")
        codes.append(last.status_code)
    return codes, last


@pytest.mark.parametrize("cache", ["configured", "local", "redis down"])
def test_a_key_over_its_rate_limit_gets_429_with_retry_after(settings: Any, cache: str) -> None:
    if cache == "local":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "rl"}}
    elif cache == "redis down":
        settings.CACHES = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
                "KEY_PREFIX": "rl",
                "OPTIONS": dict(settings.REDIS_CACHE_OPTIONS),
            }
        }
    client = _client_with_limit("3/min")
    started = time.monotonic()
    codes, last = _until_limited(client, 5)
    assert codes == [200, 200, 200, 429, 429], codes
    assert 1 <= int(last["Retry-After"]) <= 60
    assert last.json()["message"]
    assert time.monotonic() - started < 5  # Redis down costs no timeouts


def test_the_default_rate_limit_applies_to_keys_without_their_own(settings: Any) -> None:
    settings.API_KEY_RATE_LIMIT = "2/hour"
    codes, _ = _until_limited(_client_with_limit(""), 3)
    assert codes == [200, 200, 429]
    codes, _ = _until_limited(_client_with_limit("100/min"), 3)  # the key's own limit wins
    assert codes == [200, 200, 200]


def test_each_key_has_its_own_count(settings: Any) -> None:
    first, second = _client_with_limit("1/min"), _client_with_limit("1/min")
    assert first.get("/api/v1/items").status_code == 200
    assert first.get("/api/v1/items").status_code == 429
    assert second.get("/api/v1/items").status_code == 200


def test_a_malformed_rate_limit_is_refused() -> None:
    with pytest.raises(ValidationError):
        api_key_create(name="bad", scopes=["ingest"], rate_limit="lots")


# --- bodies ----------------------------------------------------------------------------------------


def test_an_oversized_body_gets_413(api_client: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps([{"event_id": "x" * 100}] * 200)
    response = api_client.post("/api/v1/events", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["extra"]["max_bytes"] == 10_000


@pytest.mark.parametrize(
    "url,method",
    [
        ("/api/v1/events", "post"),
        ("/api/v1/items", "post"),
        ("/api/v1/items/SKU-1042", "put"),
        ("/api/v1/rules", "post"),
    ],
)
def test_deeply_nested_json_gets_a_400_quickly(api_client: APIClient, url: str, method: str) -> None:
    started = time.monotonic()
    response = getattr(api_client, method)(url, "[" * 50_000, content_type="application/json")
    assert response.status_code == 400
    assert time.monotonic() - started < 2


def test_nesting_past_the_limit_inside_a_value_is_a_400(api_client: APIClient) -> None:
    ItemFactory(shop_id="SKU-1")
    deep: Any = "x"
    for _ in range(200):
        deep = [deep]
    body = json.dumps({"title": "T", "attributes": {"deep": deep, "n": 10**30}})
    response = api_client.put("/api/v1/items/SKU-1", body, content_type="application/json")
    assert response.status_code == 400


class _View:
    json_max_rows = 10_000
    json_rows_field = "events"
    json_rows_checked_by_view = True


def _parse(raw: bytes, view: Any) -> Any:
    import io

    return SafeJSONParser().parse(io.BytesIO(raw), parser_context={"view": view})


_ROW = {
    "event_id": "e-000000",
    "customer": "C-1",
    "item": "SKU-1",
    "type": "view",
    "occurred_at": "2026-11-24T10:00:00Z",
    "context": {"device": "mobile", "page": "/p/argan-oil"},
}


@pytest.mark.parametrize("form", ["list", "object"])
def test_a_batch_past_the_row_limit_is_refused_before_it_is_parsed_whole(form: str) -> None:
    rows = [_ROW] * 100_000
    raw = json.dumps(rows if form == "list" else {"source": "feed", "events": rows}).encode()

    tracemalloc.start()
    with pytest.raises(ValidationError) as refused:
        _parse(raw, _View())
    _, bounded_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    json.loads(raw)
    _, whole_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "events" in refused.value.extra["fields"]
    print(
        f"\n{form} body {len(raw) / 1e6:.1f} MB: peak {bounded_peak / 1e6:.1f} MB refused while parsing, "
        f"{whole_peak / 1e6:.1f} MB parsed whole"
    )
    assert bounded_peak < whole_peak / 3


def test_the_object_form_counts_its_rows_too() -> None:
    with pytest.raises(ValidationError) as refused:
        _parse(json.dumps({"events": [_ROW] * 10_001}).encode(), _View())
    assert "events" in refused.value.extra["fields"]
    assert len(_parse(json.dumps({"events": [_ROW] * 10_000}).encode(), _View())["events"]) == 10_000


class _EventsView(_View):
    json_object_fields = frozenset(_ROW) | {"value", "price", "scene", "recommendation_id"}


def test_an_unknown_member_of_an_object_body_is_refused_before_its_value_is_parsed() -> None:
    """One event with a huge list under a key it does not know: refused when the key is read, so
    the list never becomes Python objects (the rows field is counted; nothing else is decoded whole)."""
    raw = json.dumps({**_ROW, "junk": [_ROW] * 100_000}).encode()
    tracemalloc.start()
    with pytest.raises(ValidationError) as refused:
        _parse(raw, _EventsView())
    _, bounded_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    json.loads(raw)
    _, whole_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert list(refused.value.extra["fields"]) == ["junk"]
    assert "unknown field" in refused.value.message and "events" in refused.value.message
    print(
        f"\nobject body {len(raw) / 1e6:.1f} MB, unknown member: peak {bounded_peak / 1e6:.1f} MB refused, "
        f"{whole_peak / 1e6:.1f} MB parsed whole"
    )
    assert bounded_peak < whole_peak / 3
    # Known members and the rows field are read as before; the envelope's rows are still counted.
    assert _parse(json.dumps(_ROW).encode(), _EventsView()) == _ROW
    assert _parse(json.dumps({"events": [_ROW] * 3}).encode(), _EventsView()) == {"events": [_ROW] * 3}
    with pytest.raises(ValidationError) as refused:
        _parse(json.dumps({"events": [_ROW], "sent_at": 1}).encode(), _EventsView())
    assert list(refused.value.extra["fields"]) == ["sent_at"]
    with pytest.raises(ValidationError) as refused:  # a name that cannot be encoded is shown escaped
        _parse(b'{"\\ud800": 1}', _EventsView())
    assert list(refused.value.extra["fields"]) == ["\\ud800"]


def test_the_streaming_parse_reads_what_json_loads_reads() -> None:
    for raw in [
        b"[]",
        b' [ 1 , {"a": [2, 3]} , "x" ] ',
        b'[\n{"a": null}\n]\n',
        b"{}",
        b" { } ",
        b'"x"',
        b"3",
        b'{"events": []}',
        b'{ "a" : 1 , "events" : [ {"b": [1]} , 2 ] , "c": {"events": [3]} }\n',
        b'{"events": {"not": "a list"}}',
        b'{"events": [1], "events": [2]}',
        b'{"e\\u0076ents": [1]}',
    ]:
        assert _parse(raw, _View()) == json.loads(raw)
    for bad in [
        b"[1,]",
        b"[1 2]",
        b"[1] x",
        b"[NaN]",
        b'{"a": Infinity}',
        b'{"a": 1,}',
        b'{"a" 1}',
        b"{a: 1}",
        b'{"a": 1} x',
        b'{"events": [1,]}',
        b'{"events": [1]',
        b'{"a": 1 "b": 2}',
        b"",
    ]:
        with pytest.raises(ParseError):
            _parse(bad, _View())


def test_an_object_body_past_the_row_limit_gets_a_400_naming_events(api_client: APIClient) -> None:
    body = json.dumps({"events": [_ROW] * 10_001})
    response = api_client.post("/api/v1/events", body, content_type="application/json")
    assert response.status_code == 400
    assert "events" in response.json()["extra"]["fields"]


def test_the_parser_refuses_an_unbounded_stream(settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    with pytest.raises(PayloadTooLarge):
        _parse(b"[" + b"1," * 100 + b"1]", _View())


# --- ids and query parameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/items/SKU%00-1",
        "/api/v1/rules?scene=home%00",
        "/api/v1/items?category=a%00b",
        "/api/v1/categories/a%00",
        "/api/v1/recommendations?customer=c%00&scene=home",
        "/api/v1/items/SKU-1/similar?scene=%00",
    ],
)
def test_a_nul_in_a_path_or_query_parameter_is_a_400(api_client: APIClient, url: str) -> None:
    response = api_client.get(url)
    assert response.status_code == 400, response.content
    assert "NUL" in response.json()["message"]


@pytest.mark.parametrize(
    "shop_id",
    [
        "' OR 1=1--",
        "1; DROP TABLE catalog_item",
        "../../etc/passwd",
        "%27%22%3E%3Cscript%3E",
        "a" * 5000,
        "%ED%A0%80",
        "%FF%FE",
    ],
)
def test_garbage_and_injection_shaped_ids_get_404_or_400(api_client: APIClient, shop_id: str) -> None:
    for url in [f"/api/v1/items/{shop_id}", f"/api/v1/customers/{shop_id}", f"/api/v1/categories/{shop_id}"]:
        response = api_client.get(url)
        assert response.status_code in (400, 404), (url, response.status_code)
        assert response["Content-Type"].startswith("application/json")


def test_garbage_query_parameters_get_a_4xx(make_api_client: Callable[..., APIClient]) -> None:
    client = make_api_client("ingest", "recommend", "manage")
    clear_cache()
    for url in [
        "/api/v1/items?limit=99999999999999999999999",
        "/api/v1/items?cursor=%27%3B--",
        "/api/v1/items?updated_since=0000-00-00",
        "/api/v1/rules?scene=" + "x" * 5000,
    ]:
        response = client.get(url)
        assert response.status_code in (200, 400, 404), (url, response.status_code)
