"""Counting and logging the times serving fell back instead of using the model.

A counter per reason in the cache (shared by every web worker when Redis is configured) and a log
line per event; the admin shows the counters. Counting must never fail a request.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from django.core.cache import cache
from django.utils import timezone

logger = logging.getLogger("recadmin.serving.fallback")

# The model could not answer: these are the events operators care about.
REASON_TORCHSERVE_DOWN = "torchserve_unavailable"
REASON_TORCHSERVE_SLOW = "torchserve_timeout"
REASON_TORCHSERVE_ERROR = "torchserve_error"
REASON_NO_DEFAULT = "no_default_model"
REASON_INTERNAL = "internal_error"
# Not failures: a customer with nothing to go on, or an item the model has never seen.
REASON_COLD_START = "cold_start"
REASON_UNKNOWN_TO_MODEL = "unknown_to_model"
REASON_SCENE_DISABLED = "scene_disabled"
# A strategy's source with nothing to go on: no current item or cart, no complements computed yet,
# or no candidate at all from any source.
REASON_NO_ITEM = "no_context_item"
REASON_NO_COMPLEMENTS = "no_complements"
REASON_NO_CANDIDATES = "no_candidates"

FAILURE_REASONS = (
    REASON_TORCHSERVE_DOWN,
    REASON_TORCHSERVE_SLOW,
    REASON_TORCHSERVE_ERROR,
    REASON_NO_DEFAULT,
    REASON_INTERNAL,
)
ALL_REASONS = (
    *FAILURE_REASONS,
    REASON_COLD_START,
    REASON_UNKNOWN_TO_MODEL,
    REASON_SCENE_DISABLED,
    REASON_NO_ITEM,
    REASON_NO_COMPLEMENTS,
    REASON_NO_CANDIDATES,
)

_COUNTER = "serving:fallback:{}"
_LAST = "serving:fallback:last"
_SINCE = "serving:fallback:since"


# During an outage every request falls back: one log line per reason and process per second, with
# the number of events it stands for, keeps the log readable (the counters have every event).
LOG_EVERY_SECONDS = 1.0
_log_state: dict[str, tuple[float, int]] = {}
_log_lock = threading.Lock()


def _log(reason: str, detail: str, scene: str, customer: str) -> bool:
    now = time.monotonic()
    with _log_lock:
        last, suppressed = _log_state.get(reason, (0.0, 0))
        if now - last < LOG_EVERY_SECONDS:
            _log_state[reason] = (last, suppressed + 1)
            return False
        _log_state[reason] = (now, 0)
    more = f" (+{suppressed} more since the last line)" if suppressed else ""
    logger.warning("serving fell back (%s) scene=%s customer=%s: %s%s", reason, scene, customer, detail, more)
    return True


def counter_key(reason: str) -> str:
    """The cache key of a reason's counter (an integer, so a raw Redis INCR on it works)."""
    return _COUNTER.format(reason)


def fallback_counted(reason: str, value: int | None) -> None:
    """After serving a fallback list: `value` is the counter after an INCR done in another round trip
    (serving's served-log pipeline), None to count it here."""
    with contextlib.suppress(Exception):
        if value is None:
            _count(reason)
        elif value == 1:  # the first one since a reset
            cache.add(_SINCE, timezone.now().isoformat(), None)


def _count(reason: str) -> None:
    key = counter_key(reason)
    try:
        cache.incr(key)
    except ValueError:  # the first one since a reset
        cache.add(_SINCE, timezone.now().isoformat(), None)
        if not cache.add(key, 1, None):
            cache.incr(key)


def fallback_record(*, reason: str, detail: str = "", scene: str = "", customer: str = "", count: bool = True) -> None:
    """Count one fallback and log it (failures at WARNING, rate-limited; expected ones at DEBUG).
    `count=False`: the caller counts it later (fallback_counted)."""
    logged = False
    if reason in FAILURE_REASONS:
        logged = _log(reason, detail, scene, customer)
    else:
        logger.debug("serving fallback (%s) scene=%s customer=%s", reason, scene, customer)
    with contextlib.suppress(Exception):
        if count:
            _count(reason)
        if logged:  # as often as the log line: once a second per process at most
            cache.set(_LAST, {"reason": reason, "detail": detail[:300], "at": timezone.now().isoformat()}, None)


def fallback_counts() -> dict[str, int]:
    """{reason: count} since the counters were last reset, every reason present."""
    try:
        found = cache.get_many([counter_key(r) for r in ALL_REASONS])
    except Exception:  # noqa: BLE001 - the admin shows zeros rather than an error
        found = {}
    return {r: int(found.get(counter_key(r)) or 0) for r in ALL_REASONS}


def fallback_summary() -> dict[str, object]:
    counts = fallback_counts()
    try:
        last, since = cache.get(_LAST), cache.get(_SINCE)
    except Exception:  # noqa: BLE001
        last, since = None, None
    return {
        "counts": counts,
        "failures": sum(counts[r] for r in FAILURE_REASONS),
        "last_failure": last,
        "since": since,
    }


def fallback_reset() -> None:
    with contextlib.suppress(Exception):
        cache.delete_many([counter_key(r) for r in ALL_REASONS] + [_LAST, _SINCE])
