"""Invalidation hook for caches of item data kept by higher apps (serving's item metadata).

Bulk writes fire no signals, so the services that make them call `items_changed` themselves; single-row
saves and deletes (services, admin, imports) invalidate through the signals at the bottom. Keys are
built here, so the cache's owners and the catalog agree on them without the catalog importing
anything above it: one key per item under a generation number. Changing some items deletes their
keys; changing categories (paths move whole subtrees) bumps the generation, which orphans every key
at once (they expire on their TTL).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterable
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

GENERATION_KEY = "catalog:items:generation"
# Bumped by every change (items or categories): readers that keep item data in process memory
# compare it once per request and drop their copy when it moved.
CHANGES_KEY = "catalog:items:changes"


def items_generation() -> int:
    try:
        value = cache.get(GENERATION_KEY)
    except Exception:  # noqa: BLE001 - a cache outage: readers fall back to the database anyway
        return 0
    return int(value or 0)


def _fresh_token() -> int:
    # A lost counter (evicted, flushed) restarts at a random value, never at one a reader saw before.
    return secrets.randbelow(2**62) + 1


def items_state() -> tuple[int, int | None]:
    """(generation, change counter) in one cache round trip; the counter is None when the cache
    cannot say (then nothing may be trusted from a process-local copy)."""
    try:
        found = cache.get_many([GENERATION_KEY, CHANGES_KEY])
        changes = found.get(CHANGES_KEY)
        if changes is None:
            cache.add(CHANGES_KEY, _fresh_token(), None)
            changes = cache.get(CHANGES_KEY)
    except Exception:  # noqa: BLE001
        return 0, None
    return int(found.get(GENERATION_KEY) or 0), (int(changes) if changes is not None else None)


def _count_change() -> None:
    with contextlib.suppress(Exception):
        if not cache.add(CHANGES_KEY, _fresh_token(), None):
            cache.incr(CHANGES_KEY)


def item_cache_key(shop_id: str, generation: int) -> str:
    return f"catalog:item:{generation}:{shop_id}"


def _bump() -> None:
    with contextlib.suppress(Exception):
        if not cache.add(GENERATION_KEY, 1, None):
            cache.incr(GENERATION_KEY)
    _count_change()


def _delete(shop_ids: list[str]) -> None:
    with contextlib.suppress(Exception):
        generation = items_generation()
        cache.delete_many([item_cache_key(s, generation) for s in shop_ids])
    _count_change()


def items_changed(shop_ids: Iterable[str] | None = None) -> None:
    """Call after writing items (the given ones) or categories (None: everything is stale).
    Runs after the transaction commits, so no reader refills a key with the old row."""
    if shop_ids is None:
        transaction.on_commit(_bump)
        return
    ids = [str(s) for s in shop_ids]
    if ids:
        transaction.on_commit(lambda: _delete(ids))


# Single-row saves that bypass the services (the admin's item form, django-import-export's rows)
# fire Django's signals: those invalidate too. Bulk writes fire none and call items_changed above.
@receiver(post_save, sender="catalog.Item", dispatch_uid="catalog-cache-item-saved")
@receiver(post_delete, sender="catalog.Item", dispatch_uid="catalog-cache-item-deleted")
def _item_saved(sender: type, instance: Any, **kwargs: Any) -> None:
    items_changed([instance.shop_id])


@receiver(post_save, sender="catalog.Category", dispatch_uid="catalog-cache-category-saved")
@receiver(post_delete, sender="catalog.Category", dispatch_uid="catalog-cache-category-deleted")
def _category_saved(sender: type, instance: Any, **kwargs: Any) -> None:
    items_changed()
