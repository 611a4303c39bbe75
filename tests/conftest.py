"""Fixtures shared by every area. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

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


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


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
