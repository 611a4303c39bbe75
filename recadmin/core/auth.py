"""API-key authentication and scope permissions for the shop-facing API."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from recadmin.core.errors import AuthenticationFailed, PermissionDenied
from recadmin.core.models import ApiKey
from recadmin.core.services import (
    api_key_cache_key,
    api_key_grant_local_get,
    api_key_grant_local_set,
    hash_api_key,
)

# Keys are looked up on every request of the hot path; a short cache keeps that off the database.
# Revocation deletes the cache entry, so the window only matters across cache outages.
_CACHE_SECONDS = 60


@dataclass(frozen=True)
class ApiClient:
    """What a request is authenticated as. Plays the role of `request.user` for DRF."""

    key_id: int
    name: str
    scopes: frozenset[str]
    rate_limit: str = ""

    is_authenticated = True
    is_anonymous = False

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiClient] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower():
            raise AuthenticationFailed("Authorization header must be 'Bearer <api key>'.")
        hashed = hash_api_key(parts[1])
        cache_key = api_key_cache_key(hashed)
        cached = api_key_grant_local_get(hashed)
        if cached is None:
            try:
                cached = cache.get(cache_key)
            except Exception:  # noqa: BLE001 - a cache outage must not lock shops out
                cached = None
            if cached is not None:
                api_key_grant_local_set(hashed, cached)
        if cached is None:
            row = (
                ApiKey.objects.filter(hashed_key=hashed, revoked_at__isnull=True)
                .values("id", "name", "scopes", "rate_limit")
                .first()
            )
            if row is None:
                raise AuthenticationFailed("Invalid or revoked API key.")
            cached = {
                "id": row["id"],
                "name": row["name"],
                "scopes": list(row["scopes"] or []),
                "rate_limit": row["rate_limit"] or "",
            }
            # Recorded on cache misses only: at most one write per key per cache period, so the
            # admin can show stale keys without the hot path writing on every request.
            ApiKey.objects.filter(pk=row["id"]).update(last_used_at=timezone.now())
            with contextlib.suppress(Exception):
                cache.set(cache_key, cached, _CACHE_SECONDS)
            api_key_grant_local_set(hashed, cached)
        client = ApiClient(
            key_id=cached["id"],
            name=cached["name"],
            scopes=frozenset(cached["scopes"]),
            rate_limit=cached.get("rate_limit") or "",
        )
        return client, client

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) when no credentials were sent.
        return self.keyword


class _ScopePermission(BasePermission):
    scope: str = ""

    def has_permission(self, request: Request, view: Any) -> bool:
        client = request.user
        if not isinstance(client, ApiClient):
            raise AuthenticationFailed("An API key is required: send 'Authorization: Bearer <api key>'.")
        if not client.has_scope(self.scope):
            raise PermissionDenied(
                f"This API key lacks the '{self.scope}' scope.", extra={"required_scope": self.scope}
            )
        return True


class HasIngestScope(_ScopePermission):
    scope = "ingest"


class HasRecommendScope(_ScopePermission):
    scope = "recommend"


class HasManageScope(_ScopePermission):
    scope = "manage"
