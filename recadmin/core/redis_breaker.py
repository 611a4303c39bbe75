"""A circuit breaker in front of Redis: the one place that decides what a Redis outage costs a request.

Every Redis client the project makes through django-redis (the cache, and `get_redis_connection`'s raw
client used for pipelines and scripts) is a `BreakerRedis` (settings: OPTIONS["REDIS_CLIENT_CLASS"]).
Its commands and pipelines pass through one breaker per Redis server and process:

- closed: commands run; a connection error or a timeout opens the circuit (one log line).
- open: every command fails at once with `CircuitOpen` (a redis ConnectionError, so django-redis's
  IGNORE_EXCEPTIONS turns cache reads into misses and writes into no-ops, and code that already keeps
  going without Redis does so in microseconds instead of waiting for socket timeouts and retries).
- half-open: every REDIS_BREAKER_PROBE_SECONDS one background thread PINGs Redis with short timeouts;
  a PONG closes the circuit (one log line), anything else leaves it open. Requests never wait for the
  probe, so a hung Redis (CLIENT PAUSE) costs at most the one call that found it hung.

redis-py's own retries are turned off for these clients: a retry against a dead or paused server only
multiplies the socket timeout (the 14-15 s a request used to wait).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.retry import Retry

logger = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
_FAILURES = (redis.ConnectionError, redis.TimeoutError, TimeoutError, ConnectionError)


# What a caller catches to carry on without Redis (CircuitOpen included).
REDIS_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError)


class CircuitOpen(redis.ConnectionError):
    """Redis is known to be unavailable: the command was not sent."""


def _setting(name: str, default: float) -> float:
    try:
        from django.conf import settings

        return float(getattr(settings, name, default))
    except Exception:  # noqa: BLE001 - outside Django (a bench script): the defaults
        return default


class CircuitBreaker:
    def __init__(self, name: str, connection_kwargs: dict[str, Any], connection_class: type[Any]) -> None:
        self.name = name
        self._connection_class = connection_class
        self.state = CLOSED
        self.opened_at = 0.0
        self.next_probe_at = 0.0
        self.last_error = ""
        self._connection_kwargs = dict(connection_kwargs)
        self._lock = threading.Lock()

    # --- the request path: no I/O, no waiting --------------------------------------------------
    def before_call(self) -> None:
        if self.state == CLOSED:
            return
        now = time.monotonic()
        start_probe = False
        with self._lock:
            if self.state == OPEN and now >= self.next_probe_at:
                self.state = HALF_OPEN
                start_probe = True
        if start_probe:
            threading.Thread(target=self._probe, name=f"redis-breaker-probe:{self.name}", daemon=True).start()
        raise CircuitOpen(f"Redis at {self.name} is unavailable (circuit open: {self.last_error})")

    def record_failure(self, exc: BaseException) -> None:
        if isinstance(exc, CircuitOpen):
            return
        with self._lock:
            if self.state != CLOSED:
                return
            self.state = OPEN
            self.opened_at = time.monotonic()
            self.next_probe_at = self.opened_at + _setting("REDIS_BREAKER_PROBE_SECONDS", 1.0)
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
        _state_changed(self, OPEN)
        logger.warning(
            "Redis circuit open for %s (%s): cache calls fail fast until a probe gets an answer",
            self.name,
            self.last_error,
        )

    # --- the probe: a thread of its own with a client of its own ------------------------------
    def _probe(self) -> None:
        timeout = _setting("REDIS_BREAKER_PROBE_TIMEOUT", 0.5)
        kwargs = {
            **self._connection_kwargs,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        ok = False
        connection = None
        try:
            connection = self._connection_class(**kwargs)
            connection.send_command("PING")
            ok = connection.read_response() in (b"PONG", "PONG", True)
        except Exception as exc:  # noqa: BLE001 - still down: stay open, probe again later
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            if connection is not None:
                try:
                    connection.disconnect()
                except Exception:
                    logger.debug("closing the probe connection failed", exc_info=True)
        with self._lock:
            if ok:
                self.state = CLOSED
                outage = time.monotonic() - self.opened_at
            else:
                self.state = OPEN
                self.next_probe_at = time.monotonic() + _setting("REDIS_BREAKER_PROBE_SECONDS", 1.0)
        if ok:
            _state_changed(self, CLOSED)
            logger.warning("Redis circuit closed for %s: Redis answers again after %.1f s", self.name, outage)


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def _server_name(kwargs: dict[str, Any]) -> str:
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}/{kwargs.get('db', 0)}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def breaker_for(pool: redis.ConnectionPool) -> CircuitBreaker:
    name = _server_name(pool.connection_kwargs)
    breaker = _breakers.get(name)
    if breaker is None:
        with _breakers_lock:
            breaker = _breakers.setdefault(name, CircuitBreaker(name, pool.connection_kwargs, pool.connection_class))
    return breaker


def breaker_for_url(url: str) -> CircuitBreaker | None:
    """The breaker of the Redis at `url`, if a client of this process has used it."""
    from redis.connection import parse_url

    try:
        kwargs = parse_url(url)
    except ValueError:
        return None
    return _breakers.get(_server_name(kwargs))


def breakers() -> dict[str, CircuitBreaker]:
    """Every breaker of this process, by server (readiness and tests look at them)."""
    return dict(_breakers)


def breakers_reset() -> None:
    """Forget every breaker (tests that start and stop their own Redis)."""
    with _breakers_lock:
        _breakers.clear()


def _state_changed(breaker: CircuitBreaker, state: str) -> None:
    try:
        from recadmin.core.observability.metrics import REDIS_CIRCUIT_CHANGES

        REDIS_CIRCUIT_CHANGES.labels(server=breaker.name, state=state).inc()
    except Exception:
        logger.debug("could not export the circuit state", exc_info=True)


class BreakerPipeline(Pipeline):
    breaker: CircuitBreaker

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        self.breaker.before_call()
        try:
            return super().execute(raise_on_error=raise_on_error)
        except _FAILURES as exc:
            self.breaker.record_failure(exc)
            raise


class BreakerRedis(redis.Redis):
    """redis.Redis whose commands and pipelines go through the server's circuit breaker, without retries."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # With a pool given, redis-py takes the retry policy from the pool's connections (by default
        # three retries with backoff): none against a dead or paused server.
        self.set_retry(Retry(NoBackoff(), 0))
        self.breaker = breaker_for(self.connection_pool)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.breaker.before_call()
        try:
            return super().execute_command(*args, **options)
        except _FAILURES as exc:
            self.breaker.record_failure(exc)
            raise

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        pipe = BreakerPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.breaker = self.breaker
        return pipe
