"""Fixtures shared by every area. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test.utils import override_settings
from rest_framework.test import APIClient

pytest_plugins = ["tests.fixtures.torchserve"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RECADMIN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def _db_engine() -> str:
    return str(settings.DATABASES["default"]["ENGINE"])


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") and "postgresql" not in _db_engine():
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://... (the suite runs on SQLite otherwise)")
    if item.get_closest_marker("redis") and not settings.REDIS_URL:
        pytest.skip("needs Redis: set REDIS_URL=redis://...")
    if item.get_closest_marker("data") and not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set RECADMIN_SHARED_DATA)")


# Several test runs may share one PostgreSQL and one Redis (developers side by side, CI): each run
# gets its own cache key prefix and its own test database, so none clears another's.
@pytest.fixture(scope="session", autouse=True)
def _isolated_cache_prefix() -> Iterator[None]:
    prefix = f"test{os.getpid()}"
    caches_setting = {alias: {**conf, "KEY_PREFIX": prefix} for alias, conf in settings.CACHES.items()}
    override = override_settings(CACHES=caches_setting, CACHE_KEY_PREFIX=prefix)
    override.enable()
    # django-redis's clear() is FLUSHDB: a test calling cache.clear() in one xdist worker emptied the
    # other worker's served-log list mid-test (tests/core/test_scheduler.py failed in CI that way).
    # In tests, clear() empties this run's keys only.
    from django_redis.cache import RedisCache

    flush = RedisCache.clear
    RedisCache.clear = lambda self: self.delete_pattern("*")  # type: ignore[method-assign]
    yield
    RedisCache.clear = flush  # type: ignore[method-assign]
    override.disable()


@pytest.fixture(scope="session", autouse=True)
def _celery_in_process() -> Iterator[None]:
    """Tasks run in the test's process, even with REDIS_URL set (where a deployment uses a worker).
    A test that wants a real worker starts one and flips this back itself."""
    from recadmin.celery import app

    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = previous


@pytest.fixture(autouse=True)
def _training_in_process(settings: Any) -> None:
    """Training runs finish inside the test (the child-process mode has its own test)."""
    settings.MODELOPS_TRAIN_IN_SUBPROCESS = False


@pytest.fixture(scope="session")
def django_db_modify_db_settings() -> None:
    test_settings = settings.DATABASES["default"].setdefault("TEST", {})
    if "postgresql" in _db_engine() and not test_settings.get("NAME"):
        test_settings["NAME"] = f"test_{settings.DATABASES['default']['NAME']}_{os.getpid()}"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """At the end, close the sessions that processes and threads started by tests (Celery workers'
    pool children, scheduler threads) still hold on this run's test database, so that it can be
    dropped: otherwise a `test_test_<pid>` database was left behind by each run."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )


def clear_cache() -> None:
    """Empty this run's cache only (django-redis's clear() would flush the whole Redis database)."""
    from recadmin.core.services import api_key_grants_forget_local

    api_key_grants_forget_local()
    _forget_process_copies()
    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("*")
    else:
        cache.clear()


def _forget_process_copies() -> None:
    """The process-local copies in front of the cache (trending lists, item metadata, category median
    prices): with tests of several files in one process (pytest-xdist), one test's shop must not show
    through in the next."""
    from recadmin.catalog import metadata
    from recadmin.catalog.selectors import category_median_prices_forget_local
    from recadmin.serving import popular, served_log

    category_median_prices_forget_local()
    popular._local.clear()
    served_log._local_rejected.clear()
    served_log._local_buffer.clear()
    metadata._local.clear()
    metadata._local_state[0] = None
    metadata._category_items_local.clear()


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def make_api_client(db: None) -> Callable[..., APIClient]:
    """make_api_client("ingest", "recommend") -> an APIClient sending a fresh key with those scopes."""
    from recadmin.core.services import api_key_create

    def factory(*scopes: str) -> APIClient:
        client = APIClient()
        created = api_key_create(name="test", scopes=list(scopes) or ["ingest"])
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {created.raw_key}")
        return client

    return factory


@pytest.fixture
def api_client(make_api_client: Callable[..., APIClient]) -> APIClient:
    """A client whose key has every scope."""
    return make_api_client("ingest", "recommend", "manage")
