"""Test runs (and pytest-xdist workers) share one Redis database: clearing this run's cache must leave
the other runs' keys alone (django-redis's own clear() is FLUSHDB)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.cache import cache

pytestmark = pytest.mark.redis


def test_cache_clear_in_a_test_leaves_another_runs_keys() -> None:
    from django_redis import get_redis_connection

    raw = get_redis_connection("default")
    other = "another-run:1:served-log"
    raw.rpush(other, "r-1")
    try:
        cache.set("mine", 1)
        cache.clear()
        assert cache.get("mine") is None
        assert raw.llen(other) == 1
    finally:
        raw.delete(other)
    assert settings.CACHE_KEY_PREFIX.startswith("test")
