from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from recadmin.core.errors import ValidationError
from recadmin.core.models import ApiKey, ApiScope

KEY_PREFIX = "rk_"
_CACHE_PREFIX = "apikey:"


def hash_api_key(raw_key: str) -> str:
    # Keys are 256-bit random secrets, so an unsalted SHA-256 is enough and keeps lookups O(1).
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_cache_key(hashed_key: str) -> str:
    return f"{_CACHE_PREFIX}{hashed_key}"


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    raw_key: str


def _validate_scopes(scopes: Iterable[str]) -> list[str]:
    cleaned = sorted({scope.strip() for scope in scopes if scope.strip()})
    valid = set(ApiScope.values)
    unknown = [scope for scope in cleaned if scope not in valid]
    if unknown:
        raise ValidationError(
            f"Unknown scope(s): {', '.join(unknown)}. Valid scopes: {', '.join(sorted(valid))}.", field="scopes"
        )
    if not cleaned:
        raise ValidationError("At least one scope is required.", field="scopes")
    return cleaned


@transaction.atomic
def api_key_create(*, name: str, scopes: Iterable[str]) -> CreatedApiKey:
    if not name.strip():
        raise ValidationError("A name is required.", field="name")
    prefix = secrets.token_hex(4)
    raw_key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        name=name.strip(), prefix=prefix, hashed_key=hash_api_key(raw_key), scopes=_validate_scopes(scopes)
    )
    return CreatedApiKey(api_key=api_key, raw_key=raw_key)


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    # Drop the cached grant now and again after commit, so a request racing the commit cannot
    # leave the revoked key cached.
    cache.delete(api_key_cache_key(api_key.hashed_key))
    transaction.on_commit(lambda: cache.delete(api_key_cache_key(api_key.hashed_key)))
    return api_key


def api_key_update_scopes(*, api_key: ApiKey, scopes: Iterable[str]) -> ApiKey:
    api_key.scopes = _validate_scopes(scopes)
    api_key.save(update_fields=["scopes"])
    cache.delete(api_key_cache_key(api_key.hashed_key))
    return api_key
