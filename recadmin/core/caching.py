"""Outage-tolerant cache primitives shared by the apps that keep cached reads.

The cache is an accelerator: when it is down, a read is a miss and the caller builds the value from
the database. `cache_get` is that read; `version_token` and `version_bump` keep a namespace of keys
that one write invalidates at once (each key embeds the current token).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)


def cache_get(key: str) -> Any:
    """The cached value, or None when it is absent or the cache is unavailable."""
    try:
        return cache.get(key)
    except Exception:  # noqa: BLE001 - an outage reads as a miss
        return None


def version_token(key: str, *, unavailable: str) -> str:
    """The namespace's current token (made on first use); "" when the cache is unavailable, which
    callers read as "do not cache" (`unavailable` is the warning logged then)."""
    try:
        version = cache.get(key)
        if version is None:
            cache.add(key, uuid.uuid4().hex, None)
            version = cache.get(key)
    except Exception:
        logger.warning(unavailable, exc_info=True)
        return ""
    return str(version or "")


def version_bump(key: str, *, before: Callable[[], None] | None = None) -> None:
    """Invalidate the namespace now and again when the transaction commits (a reader inside the
    transaction window may have cached the old state under the new token). `before` runs first
    each time (a process-local copy to forget)."""

    def bump() -> None:
        if before is not None:
            before()
        with contextlib.suppress(Exception):
            cache.set(key, uuid.uuid4().hex, None)

    bump()
    transaction.on_commit(bump)
