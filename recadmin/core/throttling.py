"""Per-API-key rate limits: ApiKey.rate_limit ("1000/min"), else the API_KEY_RATE_LIMIT setting.

A fixed window per key and period, counted in the shared cache (one INCR per request: every web
process of a deployment shares the count) and, when the cache does not answer (no Redis, or Redis
down: the circuit breaker makes that immediate), in this process. Over the limit: 429 with
Retry-After (the seconds to the window's end). A key with no limit costs nothing.
"""

from __future__ import annotations

import math
import re
import threading
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from recadmin.core.auth import ApiClient

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")


def parse_rate(rate: str) -> tuple[int, int] | None:
    """ "1000/min" -> (1000, 60); None when empty, "none", or not a rate."""
    match = _RATE.match(rate or "")
    if match is None:
        return None
    return int(match.group(1)), _PERIODS[match.group(2)[0]]


_local_counts: dict[str, int] = {}
_local_lock = threading.Lock()


def _count_locally(key: str, window: int) -> int:
    with _local_lock:
        if len(_local_counts) > 50_000:  # old windows: drop them all, the current ones restart
            _local_counts.clear()
        _local_counts[key] = _local_counts.get(key, 0) + 1
        return _local_counts[key]


def _count(key: str, period: int) -> int:
    """This request's number in its window."""
    try:
        if cache.add(key, 1, period + 1):
            return 1
        value = cache.incr(key)
    except ValueError:  # expired between add and incr
        value = None
    except Exception:  # noqa: BLE001 - a cache without incr: count here
        value = None
    if isinstance(value, int):
        return value
    return _count_locally(key, period)


class ApiKeyRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        client = request.user
        if not isinstance(client, ApiClient):
            return True
        parsed = parse_rate(client.rate_limit or settings.API_KEY_RATE_LIMIT)
        if parsed is None:
            return True
        limit, period = parsed
        now = time.time()
        window = int(now // period)
        count = _count(f"ratelimit:{client.key_id}:{period}:{window}", period)
        if count <= limit:
            return True
        self._wait = max(1.0, math.ceil((window + 1) * period - now))
        return False

    def wait(self) -> float | None:
        return self._wait
