"""The simulator's HTTP side: the public API only (no serving internals), paced and bounded.

Every request waits for its slot (`rate` per second), none starts after the deadline or past
`max_requests`, and every answer's status is counted. Only loopback addresses are accepted unless
the caller allows others explicitly: simulated traffic must not reach a real shop by mistake.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import requests

DEFAULT_TIMEOUT = 10.0


class SimulationError(Exception):
    pass


class BudgetExhausted(Exception):
    """No request may start any more: the deadline passed or the request cap is reached."""


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_remote: bool = False) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise SimulationError(f"Not an http(s) URL: {url!r}.")
    if not allow_remote and not is_loopback_url(url):
        raise SimulationError(
            f"Refusing to send simulated traffic to {parts.hostname}: only loopback addresses (127.0.0.1, ::1, "
            "localhost) are allowed without --allow-remote."
        )
    return url.rstrip("/")


class ApiClient:
    def __init__(
        self,
        *,
        url: str,
        key: str,
        rate: float,
        seconds: float,
        max_requests: int,
        allow_remote: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_request: Callable[[int], None] | None = None,
    ) -> None:
        if rate <= 0:
            raise SimulationError("The rate must be positive.")
        self.base = check_url(url, allow_remote=allow_remote)
        self.rate = rate
        self.max_requests = max_requests
        self.timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._on_request = on_request
        self.started = clock()
        self.deadline = self.started + seconds
        self.requests = 0  # started (slots taken), whether answered yet or not
        self.statuses: Counter[str] = Counter()
        self._headers = {"Authorization": f"Bearer {key}", "User-Agent": "recadmin-simulator"}
        self._lock = threading.Lock()
        self._local = threading.local()  # a keep-alive session per visiting thread
        self._sessions: list[requests.Session] = []

    @property
    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(self._headers)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    # --- budget --------------------------------------------------------------------------------

    def left(self) -> int:
        """Requests that may still start (0 once the deadline passed), the final flush included."""
        if self._clock() >= self.deadline:
            return 0
        return max(0, self.max_requests - self.requests)

    def elapsed(self) -> float:
        return self._clock() - self.started

    def _take_slot(self, *, final: bool) -> None:
        """Reserve the next request slot (under the lock, so threads share the rate and the cap),
        then sleep until its time."""
        # The last request of the cap is kept for the final flush of events, so that what the
        # visitors did is not lost when the cap, rather than the clock, ends the run.
        cap = self.max_requests if final or self.max_requests == 1 else self.max_requests - 1
        with self._lock:
            if self.requests >= cap:
                raise BudgetExhausted
            if not final and self._clock() >= self.deadline:
                raise BudgetExhausted
            slot = self.started + self.requests / self.rate
            if not final and slot >= self.deadline:
                raise BudgetExhausted
            self.requests += 1
            taken = self.requests
        delay = slot - self._clock()
        if delay > 0:
            self._sleep(delay)
        if self._on_request is not None:
            self._on_request(taken)

    # --- requests ------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None, final: bool = False
    ) -> requests.Response | None:
        """One paced request; None when it failed to connect or timed out (counted as 'error').
        `final` lets the last flush of events go after the deadline (still within the cap)."""
        self._take_slot(final=final)
        try:
            response = self.session.request(method, self.base + path, params=params, json=json, timeout=self.timeout)
        except requests.RequestException:
            with self._lock:
                self.statuses["error"] += 1
            return None
        with self._lock:
            self.statuses[str(response.status_code)] += 1
        return response

    def recommendations(self, **params: Any) -> requests.Response | None:
        return self.request("GET", "/api/v1/recommendations", params=params)

    def similar(self, item: str, **params: Any) -> requests.Response | None:
        return self.request("GET", f"/api/v1/items/{quote(item, safe='')}/similar", params=params)

    def events(self, rows: list[dict[str, Any]], *, final: bool = False) -> requests.Response | None:
        return self.request("POST", "/api/v1/events", json=rows, final=final)

    def health(self) -> bool:
        """Is anything answering at the base URL (outside the budget: it is not traffic)."""
        try:
            return self.session.get(self.base + "/healthz", timeout=self.timeout).status_code < 500
        except requests.RequestException:
            return False

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
