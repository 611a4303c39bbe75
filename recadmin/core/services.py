from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
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


# Grants also kept in each process for a few seconds: the recommendations hot path then makes no
# cache round trip for auth. A revoked key stops working at once in the revoking process and within
# API_KEY_PROCESS_CACHE_SECONDS everywhere else.
_process_grants: dict[str, tuple[float, dict[str, Any]]] = {}
_PROCESS_GRANTS_MAX = 10_000


def api_key_grant_local_get(hashed_key: str) -> dict[str, Any] | None:
    entry = _process_grants.get(hashed_key)
    if entry is None or entry[0] < time.monotonic():
        return None
    return entry[1]


def api_key_grant_local_set(hashed_key: str, grant: dict[str, Any]) -> None:
    ttl = settings.API_KEY_PROCESS_CACHE_SECONDS
    if ttl <= 0:
        return
    if len(_process_grants) >= _PROCESS_GRANTS_MAX:
        _process_grants.clear()
    _process_grants[hashed_key] = (time.monotonic() + ttl, grant)


def api_key_grants_forget_local() -> None:
    """Forget every grant this process holds (tests, and after bulk key changes)."""
    _process_grants.clear()


def _forget_grant(hashed_key: str) -> None:
    _process_grants.pop(hashed_key, None)
    cache.delete(api_key_cache_key(hashed_key))


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


def _validate_rate_limit(rate_limit: str) -> str:
    from recadmin.core.throttling import parse_rate

    cleaned = rate_limit.strip()
    if cleaned and parse_rate(cleaned) is None:
        raise ValidationError("A rate like 1000/min (per s, min, hour or day), or empty.", field="rate_limit")
    return cleaned


@transaction.atomic
def api_key_create(*, name: str, scopes: Iterable[str], rate_limit: str = "") -> CreatedApiKey:
    if not name.strip():
        raise ValidationError("A name is required.", field="name")
    prefix = secrets.token_hex(4)
    raw_key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        name=name.strip(),
        prefix=prefix,
        hashed_key=hash_api_key(raw_key),
        scopes=_validate_scopes(scopes),
        rate_limit=_validate_rate_limit(rate_limit),
    )
    return CreatedApiKey(api_key=api_key, raw_key=raw_key)


def api_key_update_rate_limit(*, api_key: ApiKey, rate_limit: str) -> ApiKey:
    api_key.rate_limit = _validate_rate_limit(rate_limit)
    api_key.save(update_fields=["rate_limit"])
    _forget_grant(api_key.hashed_key)
    return api_key


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    # Drop the cached grant now and again after commit, so a request racing the commit cannot
    # leave the revoked key cached.
    _forget_grant(api_key.hashed_key)
    transaction.on_commit(lambda: _forget_grant(api_key.hashed_key))
    return api_key


def api_key_update_scopes(*, api_key: ApiKey, scopes: Iterable[str]) -> ApiKey:
    api_key.scopes = _validate_scopes(scopes)
    api_key.save(update_fields=["scopes"])
    _forget_grant(api_key.hashed_key)
    return api_key
