"""The request id (a contextvar, set per request and per Celery task) and per-request labels."""

from __future__ import annotations

import contextvars
import itertools
import os
import re
import threading
import time
from collections import deque
from typing import Any

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("recadmin_request_id", default="-")
_SANE = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")

LABELS_ATTR = "_recadmin_labels"


def request_id_get() -> str:
    return _request_id.get()


def request_id_set(value: str) -> contextvars.Token[str]:
    return _request_id.set(value)


def request_id_reset(token: contextvars.Token[str]) -> None:
    _request_id.reset(token)


# A new id is a random per-process prefix and a counter: unique, 32 hex characters like a uuid4, and
# without a getrandom() system call per request (20 µs on a loaded machine, measured).
_prefix = [os.urandom(8).hex()]
_counter = itertools.count(1)


def _new_prefix() -> None:
    _prefix[0] = os.urandom(8).hex()


# A forked gunicorn worker must not repeat its parent's ids.
os.register_at_fork(after_in_child=_new_prefix)


def request_id_new() -> str:
    return f"{_prefix[0]}{next(_counter):016x}"


def request_id_from_header(value: str | None, *, max_length: int = 128) -> str:
    """An incoming X-Request-ID when it looks like an id (it goes into every log line, so no spaces,
    quotes or control characters, and bounded), else a new one."""
    if value and len(value) <= max_length and _SANE.match(value):
        return value
    return request_id_new()


def label_request(
    request: Any,
    *,
    scene: str | None = None,
    source: str | None = None,
    fallback_reason: str | None = None,
    failure: bool = False,
) -> None:
    """Called by a view once it knows what it answered: the request's latency observation is labelled
    with the scene and the source (model / fallback / popular), a fallback is counted by reason, and
    the answer feeds this process's recent rate of failed model answers (`failure`: the model was
    down, slow or broken, not a cold start), which /readyz reports. Cheap: a dict on the request."""
    target = getattr(request, "_request", request)  # a DRF Request wraps the HttpRequest
    labels = getattr(target, LABELS_ATTR, None)
    if labels is None:
        labels = {}
        setattr(target, LABELS_ATTR, labels)
    if scene is not None:
        labels["scene"] = scene
    if source is not None:
        labels["source"] = str(source)
    if fallback_reason:
        labels["fallback_reason"] = fallback_reason
    labels["failure"] = failure


class RecentAnswers:
    """This process's recommendation answers over the last `window` seconds, in 10 s buckets: how
    many, and how many were fallbacks. A few hundred nanoseconds per answer; no I/O."""

    BUCKET = 10

    def __init__(self) -> None:
        self._buckets: deque[list[int]] = deque()  # [bucket start, answers, fallbacks]
        self._lock = threading.Lock()

    def add(self, *, fallback: bool, now: float | None = None) -> None:
        start = int(now if now is not None else time.time()) // self.BUCKET * self.BUCKET
        with self._lock:
            if not self._buckets or self._buckets[-1][0] != start:
                self._buckets.append([start, 0, 0])
                while len(self._buckets) > 360:  # one hour at most
                    self._buckets.popleft()
            bucket = self._buckets[-1]
            bucket[1] += 1
            bucket[2] += int(fallback)

    def rate(self, window: int, now: float | None = None) -> tuple[int, int]:
        """(answers, fallbacks) in the last `window` seconds."""
        since = (now if now is not None else time.time()) - window
        with self._lock:
            answers = sum(b[1] for b in self._buckets if b[0] + self.BUCKET > since)
            fallbacks = sum(b[2] for b in self._buckets if b[0] + self.BUCKET > since)
        return answers, fallbacks

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()


recent_answers = RecentAnswers()
