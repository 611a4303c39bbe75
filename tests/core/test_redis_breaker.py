"""The Redis circuit breaker on its own: a client of a server that refuses connections opens the circuit
once (one log line), then fails in microseconds; a probe against a server that answers closes it."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from recadmin.core.redis_breaker import CLOSED, OPEN, BreakerRedis, CircuitOpen, breaker_for_url, breakers_reset
from recadmin.modelops.torchserve import free_port
from tests.fixtures.services import private_redis


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Any:
    breakers_reset()
    yield
    breakers_reset()


def test_a_refused_connection_opens_the_circuit_once_and_later_calls_fail_fast(caplog: Any) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    client = BreakerRedis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    caplog.set_level(logging.INFO, logger="recadmin.core.redis_breaker")
    with pytest.raises(redis.ConnectionError):
        client.get("k")
    assert breaker_for_url(url).state == OPEN  # type: ignore[union-attr]
    started = time.perf_counter()
    for _ in range(1000):
        with pytest.raises(CircuitOpen):
            client.get("k")
        with pytest.raises(CircuitOpen):
            client.pipeline().get("k").execute()
    per_call = (time.perf_counter() - started) / 2000
    assert per_call < 0.001
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "circuit open" in lines[0]


def test_a_probe_closes_the_circuit_when_redis_answers(tmp_path: Path, caplog: Any, settings: Any) -> None:
    settings.REDIS_BREAKER_PROBE_SECONDS = 0.1
    with private_redis(tmp_path / "redis") as url:
        client = BreakerRedis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        assert client.ping()
        breaker = breaker_for_url(url)
        assert breaker is not None and breaker.state == CLOSED
        caplog.set_level(logging.INFO, logger="recadmin.core.redis_breaker")
        breaker.record_failure(redis.TimeoutError("simulated"))
        with pytest.raises(CircuitOpen):
            client.get("k")
        deadline = time.monotonic() + 5
        while breaker.state != CLOSED and time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                client.get("k")
            except CircuitOpen:
                assert time.perf_counter() - started < 0.05  # requests never wait for the probe
            time.sleep(0.05)
        assert breaker.state == CLOSED
        assert client.set("k", 1) and client.get("k") == b"1"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "open" in lines[0] and "closed" in lines[1]


def test_redis_py_retries_are_off_for_breaker_clients() -> None:
    client = BreakerRedis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    assert client.get_retry().get_retries() == 0  # type: ignore[union-attr]
