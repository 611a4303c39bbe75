from __future__ import annotations

import pytest
from django.urls import path
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from recadmin.core.auth import HasIngestScope, HasManageScope
from recadmin.core.models import ApiKey
from recadmin.core.services import api_key_create, api_key_revoke, hash_api_key

pytestmark = pytest.mark.django_db


class _IngestView(APIView):
    permission_classes = [HasIngestScope]

    def get(self, request):  # type: ignore[no-untyped-def]
        return Response({"client": request.user.name})


class _ManageView(APIView):
    permission_classes = [HasManageScope]

    def get(self, request):  # type: ignore[no-untyped-def]
        return Response({"ok": True})


urlpatterns = [path("ingest", _IngestView.as_view()), path("manage", _ManageView.as_view())]


@pytest.fixture(autouse=True)
def _urls(settings):  # type: ignore[no-untyped-def]
    settings.ROOT_URLCONF = __name__


def _client(raw_key: str | None) -> APIClient:
    client = APIClient()
    if raw_key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def test_it_stores_only_a_hash_of_the_key() -> None:
    created = api_key_create(name="storefront", scopes=["ingest"])
    stored = ApiKey.objects.get(pk=created.api_key.pk)
    assert created.raw_key not in (stored.hashed_key, stored.prefix)
    assert stored.hashed_key == hash_api_key(created.raw_key)
    assert created.raw_key.startswith(f"rk_{stored.prefix}_")


def test_it_answers_401_as_json_without_a_key() -> None:
    response = _client(None).get("/ingest")
    assert response.status_code == 401
    assert set(response.json()) == {"message", "extra"}
    assert response["WWW-Authenticate"] == "Bearer"


def test_it_answers_401_for_an_unknown_key() -> None:
    response = _client("rk_deadbeef_nope").get("/ingest")
    assert response.status_code == 401
    assert "Invalid" in response.json()["message"]


def test_it_answers_401_for_a_malformed_header() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token abc")
    assert client.get("/ingest").status_code == 401


def test_it_answers_403_naming_the_missing_scope() -> None:
    created = api_key_create(name="storefront", scopes=["ingest"])
    response = _client(created.raw_key).get("/manage")
    assert response.status_code == 403
    assert response.json()["extra"] == {"required_scope": "manage"}


def test_a_key_with_the_scope_gets_through_and_records_its_use() -> None:
    created = api_key_create(name="storefront", scopes=["ingest", "recommend"])
    response = _client(created.raw_key).get("/ingest")
    assert response.status_code == 200
    assert response.json() == {"client": "storefront"}
    created.api_key.refresh_from_db()
    assert created.api_key.last_used_at is not None


def test_a_revoked_key_is_refused_even_when_it_was_cached(django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    created = api_key_create(name="storefront", scopes=["ingest"])
    client = _client(created.raw_key)
    assert client.get("/ingest").status_code == 200  # now cached
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(api_key=created.api_key)
    assert client.get("/ingest").status_code == 401


@pytest.mark.parametrize("scopes", [[], ["ingest", "admin"]])
def test_it_rejects_unknown_or_missing_scopes(scopes: list[str]) -> None:
    from recadmin.core.errors import ValidationError

    with pytest.raises(ValidationError) as excinfo:
        api_key_create(name="x", scopes=scopes)
    assert "scopes" in excinfo.value.extra["fields"]


def _revoke_elsewhere(api_key: ApiKey) -> None:
    """What another web process's revocation leaves behind for this one: the row and the shared
    cache entry change, this process's own grants do not."""
    from django.core.cache import cache
    from django.utils import timezone

    from recadmin.core.services import api_key_cache_key

    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
    cache.delete(api_key_cache_key(api_key.hashed_key))


def test_a_key_revoked_by_another_process_is_trusted_only_for_the_process_cache_window(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import time
    from types import SimpleNamespace

    from recadmin.core import services

    settings.API_KEY_PROCESS_CACHE_SECONDS = 60
    created = api_key_create(name="storefront", scopes=["ingest"])
    client = _client(created.raw_key)
    assert client.get("/ingest").status_code == 200
    _revoke_elsewhere(created.api_key)
    assert client.get("/ingest").status_code == 200  # within the documented window
    # ... and not after it: the process's grant expires.
    monkeypatch.setattr(services, "time", SimpleNamespace(monotonic=lambda: time.monotonic() + 61))
    assert client.get("/ingest").status_code == 401


def test_without_the_process_cache_a_revocation_elsewhere_applies_at_once(settings) -> None:  # type: ignore[no-untyped-def]
    settings.API_KEY_PROCESS_CACHE_SECONDS = 0
    created = api_key_create(name="storefront", scopes=["ingest"])
    client = _client(created.raw_key)
    assert client.get("/ingest").status_code == 200
    _revoke_elsewhere(created.api_key)
    assert client.get("/ingest").status_code == 401
