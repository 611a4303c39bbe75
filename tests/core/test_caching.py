from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from recadmin.core.caching import cache_get, version_bump, version_token


def _down(*args: Any, **kwargs: Any) -> None:
    raise ConnectionError("cache down")


def test_an_outage_reads_as_a_miss_and_as_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    cache.set("caching:test", 7)
    assert cache_get("caching:test") == 7
    assert cache_get("caching:absent") is None

    monkeypatch.setattr(cache, "get", _down)

    assert cache_get("caching:test") is None
    assert version_token("caching:version", unavailable="test cache unavailable") == ""


def test_a_token_is_made_once_and_a_bump_replaces_it_now_and_at_commit(
    db: None, django_capture_on_commit_callbacks: Any
) -> None:
    first = version_token("caching:version", unavailable="")
    assert first and version_token("caching:version", unavailable="") == first
    forgotten: list[str] = []

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        version_bump("caching:version", before=lambda: forgotten.append(cache.get("caching:version")))
    bumped = version_token("caching:version", unavailable="")
    callbacks[0]()

    assert bumped not in ("", first)
    assert version_token("caching:version", unavailable="") not in ("", first, bumped)
    assert forgotten == [first, bumped]  # `before` ran ahead of each new token
