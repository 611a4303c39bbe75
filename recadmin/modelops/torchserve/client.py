"""The client of one TorchServe: management and inference APIs, key file, one pool per process.

HTTP goes through one urllib3 pool per process (`get_client()`): kept-alive connections, thread
safe, and rebuilt after a fork (gunicorn and Celery fork after import). Every call has a timeout;
only transient failures (connection errors, 502/503/504) are retried, with backoff.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import urllib3
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import NewConnectionError, ProtocolError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError

from recadmin.modelops.torchserve.config import TorchServeConfig
from recadmin.modelops.torchserve.errors import (
    _TRANSIENT_STATUS,
    ModelNotRegistered,
    ModelVersionConflict,
    TorchServeAuthError,
    TorchServeError,
    TorchServeTimeout,
    TorchServeUnavailable,
    WorkersNotReady,
    _error_for,
    _ts_message,
)
from recadmin.modelops.torchserve.fast import _FastConnection, _StaleConnection


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    status: str  # READY, UNLOADING, ... as TorchServe says
    pid: int | None = None
    memory_usage: int = 0

    @property
    def ready(self) -> bool:
        return self.status == "READY"


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    mar_url: str
    is_default: bool
    min_workers: int = 0
    max_workers: int = 0
    batch_size: int = 1
    max_batch_delay: int = 0
    response_timeout: int = 0
    workers: tuple[WorkerInfo, ...] = ()
    pending_requests: int = 0

    @property
    def ready_workers(self) -> int:
        return sum(1 for w in self.workers if w.ready)

    @property
    def is_ready(self) -> bool:
        return self.ready_workers > 0


@dataclass(frozen=True)
class ModelSummary:
    name: str
    default_mar_url: str


@dataclass(frozen=True)
class Registration:
    name: str
    version: str | None
    message: str


class _Keys:
    """TorchServe's key_file.json, re-read when it changes (keys expire and get regenerated)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, kind: str) -> str | None:
        """kind: "management", "inference" or "API"."""
        with self._lock:
            try:
                st = self.path.stat()
            except OSError:
                self._stamp, self._keys = None, {}
                return None
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                try:
                    raw = json.loads(self.path.read_text())
                    self._keys = {k: str(v["key"]) for k, v in raw.items() if isinstance(v, dict) and "key" in v}
                    self._stamp = stamp
                except (OSError, ValueError, KeyError, TypeError):
                    # Caught mid-write by TorchServe: try again on the next call.
                    self._stamp, self._keys = None, {}
            return self._keys.get(kind)

    def forget(self) -> None:
        with self._lock:
            self._stamp, self._keys = None, {}


class TorchServeClient:
    """Typed access to one TorchServe. Get the per-process instance with `get_client()`."""

    def __init__(self, config: TorchServeConfig, *, maxsize: int = 8) -> None:
        self.config = config
        # One pool for all three APIs: kept-alive connections per host:port, thread safe.
        self._http = urllib3.PoolManager(num_pools=4, maxsize=maxsize, block=False, retries=False)
        self._keys = _Keys(config.key_file)
        # predict_fast's kept-alive connection, one per thread (a _FastConnection is not thread safe).
        self._fast = threading.local()

    # ---- plumbing -------------------------------------------------------------------------

    def _headers(self, api: str) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.config.token_auth:
            key = self._keys.get(api)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        return headers

    def _base(self, api: str) -> str:
        return self.config.management_url if api == "management" else self.config.inference_url

    def _refresh_key(self, api: str) -> bool:
        """After TorchServe refused a key: re-read the file, else ask TorchServe for a new key
        with the API key (keys expire after token_expiration_min). True when a new key exists."""
        old = self._keys.get(api)
        self._keys.forget()
        if self._keys.get(api) not in (None, old):
            return True
        api_key = self._keys.get("API")
        if not api_key:
            return False
        with contextlib.suppress(Urllib3HTTPError, OSError):
            self._http.request(
                "POST",
                f"{self.config.management_url}/token?type={api}",
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=urllib3.Timeout(total=self.config.timeout),
            )
        self._keys.forget()
        new = self._keys.get(api)
        return new is not None and new != old

    def _key_refused(self, ts_type: str | None, api: str) -> bool:
        """Whether TorchServe refused our key and a new one is now at hand (retry the call once)."""
        return ts_type == "InvalidKeyException" and self.config.token_auth and self._refresh_key(api)

    def _request(
        self,
        method: str,
        api: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
        idempotent: bool = True,
        retries: int | None = None,
    ) -> Any:
        """One call with retries for transient failures. Returns parsed JSON (or text)."""
        url = self._base(api) + path
        if params:
            url += "?" + urlencode({k: _param(v) for k, v in params.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        timeout = self.config.timeout if timeout is None else timeout
        attempts = 1 + (self.config.retries if retries is None else retries)
        deadline = time.monotonic() + timeout * attempts
        auth_retried = stale_retried = False
        attempt = 0
        while True:
            attempt += 1
            headers = self._headers(api)
            if data is not None:
                headers["Content-Type"] = "application/json"
            # Never past the overall deadline: a strict budget stays strict across attempts.
            budget = max(0.001, min(timeout, deadline - time.monotonic()))
            try:
                resp = self._http.request(
                    method, url, body=data, headers=headers, timeout=urllib3.Timeout(total=budget)
                )
            except (NewConnectionError, ProtocolError, Urllib3TimeoutError, Urllib3HTTPError, OSError) as exc:
                if isinstance(exc, ProtocolError) and idempotent and not stale_retried:
                    # A kept-alive connection the server closed meanwhile: one immediate retry on
                    # a fresh connection, within the same deadline, even on the no-retry fast path.
                    stale_retried = True
                    attempt -= 1
                    if time.monotonic() < deadline:
                        continue
                # A read timeout on a non-idempotent call may have taken effect: don't repeat it.
                connect_failed = isinstance(exc, NewConnectionError) or "Connection refused" in str(exc)
                retryable = idempotent or connect_failed
                if retryable and attempt < attempts and time.monotonic() < deadline:
                    time.sleep(self.config.backoff * 2 ** (attempt - 1))
                    continue
                # NewConnectionError subclasses urllib3's TimeoutError: "refused" is not a timeout.
                timed_out = isinstance(exc, Urllib3TimeoutError) and not isinstance(exc, NewConnectionError)
                cls = TorchServeTimeout if timed_out else TorchServeUnavailable
                raise cls(
                    f"TorchServe at {self._base(api)} did not answer {method} {path}: {_short(exc)}",
                    {"url": url},
                ) from exc
            status = resp.status
            payload = _parse(resp.data)
            if 200 <= status < 300:
                return payload
            message, ts_type = _ts_message(payload, status)
            if not auth_retried and self._key_refused(ts_type, api):
                auth_retried = True
                attempt -= 1
                continue
            if status in _TRANSIENT_STATUS and idempotent and attempt < attempts and time.monotonic() < deadline:
                time.sleep(self.config.backoff * 2 ** (attempt - 1))
                continue
            raise _error_for(status, ts_type, message, self.config)

    # ---- management API ---------------------------------------------------------------------

    def register(
        self,
        mar: str | Path,
        *,
        model_name: str | None = None,
        initial_workers: int = 1,
        synchronous: bool = True,
        timeout: float | None = None,
        batch_size: int | None = None,
        max_batch_delay: int | None = None,
        response_timeout: int | None = None,
    ) -> Registration:
        """Register an archive. `mar`: a path in the model store (sent by file name, so that it
        works where TorchServe sees the store at another path) or a URL TorchServe may fetch.

        batch_size etc. left None come from the archive's model-config.yaml. On failure nothing
        stays registered: a version whose workers failed to start is unregistered again."""
        url = _mar_url(mar, self.config.model_store)
        timeout = self.config.register_timeout if timeout is None else timeout
        params: dict[str, Any] = {
            "url": url,
            "model_name": model_name,
            "initial_workers": initial_workers,
            "synchronous": synchronous,
            "batch_size": batch_size,
            "max_batch_delay": max_batch_delay,
            "response_timeout": response_timeout,
        }
        try:
            payload = self._request(
                "POST", "management", "/models", params=params, timeout=timeout, idempotent=False, retries=1
            )
        except (ModelVersionConflict, TorchServeAuthError, TorchServeUnavailable):
            raise
        except TorchServeError as exc:
            # Workers that failed to start can leave the version half registered: remove it.
            name, version = model_name, _manifest_version(mar)
            if name and version:
                with contextlib.suppress(TorchServeError, TorchServeUnavailable):
                    self.unregister(name, version)
            # Same class (a missing archive stays a 404), with the archive named in the message.
            message = f"Registering {url} failed: {exc.message}"
            raise type(exc)(message, ts_status=exc.ts_status, ts_type=exc.ts_type) from exc
        message = str(payload.get("status", "")) if isinstance(payload, dict) else str(payload)
        match = re.search(r'Model "([^"]+)" Version: (\S+)', message)
        return Registration(
            name=match.group(1) if match else (model_name or ""),
            version=match.group(2) if match else None,
            message=message,
        )

    def list_models(self) -> list[ModelSummary]:
        """Every registered model name with its default version's archive."""
        out: list[ModelSummary] = []
        token: str | None = None
        while True:
            payload = self._request("GET", "management", "/models", params={"limit": 100, "next_page_token": token})
            for m in payload.get("models", []):
                out.append(ModelSummary(name=str(m["modelName"]), default_mar_url=str(m.get("modelUrl", ""))))
            token = payload.get("nextPageToken")
            if not token:
                return out

    def describe(self, name: str, version: str | None = None) -> list[ModelVersionInfo]:
        """All versions of a model (or the one asked for), with workers and which is default."""
        default = self._request("GET", "management", f"/models/{_q(name)}")
        default_version = str(default[0]["modelVersion"]) if default else None
        suffix = f"/{_q(version)}" if version is not None else "/all"
        raw = default if version is not None and version == default_version else None
        if raw is None:
            raw = self._request("GET", "management", f"/models/{_q(name)}{suffix}")
        return [_version_info(r, default_version) for r in raw]

    def default_version(self, name: str) -> str | None:
        try:
            raw = self._request("GET", "management", f"/models/{_q(name)}")
        except ModelNotRegistered:
            return None
        return str(raw[0]["modelVersion"]) if raw else None

    def wait_until_ready(
        self, name: str, version: str | None = None, *, timeout: float = 60.0, poll: float = 0.2
    ) -> ModelVersionInfo:
        """Poll describe until a worker is READY (TorchServe's /ping answers long before)."""
        deadline = time.monotonic() + timeout
        last: str = "not registered"
        while True:
            try:
                infos = self.describe(name, version)
                info = next((i for i in infos if (version is None and i.is_default) or i.version == version), None)
                if info is not None and info.is_ready:
                    return info
                if info is not None:
                    last = ", ".join(f"{w.id}:{w.status}" for w in info.workers) or "no workers"
            except (ModelNotRegistered, TorchServeUnavailable) as exc:
                last = exc.message
            if time.monotonic() >= deadline:
                raise WorkersNotReady(
                    f"{name} version {version or 'default'}: no READY worker after {timeout:.0f}s ({last})",
                    {"model": name, "version": version},
                )
            time.sleep(poll)

    def set_default(self, name: str, version: str) -> None:
        self._request("PUT", "management", f"/models/{_q(name)}/{_q(version)}/set-default")

    def scale_workers(
        self,
        name: str,
        version: str,
        *,
        min_workers: int,
        max_workers: int | None = None,
        synchronous: bool = True,
        timeout: float | None = None,
    ) -> None:
        timeout = self.config.register_timeout if timeout is None else timeout
        self._request(
            "PUT",
            "management",
            f"/models/{_q(name)}/{_q(version)}",
            params={
                "min_worker": min_workers,
                "max_worker": max_workers if max_workers is not None else min_workers,
                "synchronous": synchronous,
                "timeout": max(1, int(timeout)),
            },
            timeout=timeout,
        )

    def unregister(self, name: str, version: str, *, timeout: float | None = None) -> None:
        """TorchServe refuses to remove the default version while others exist:
        DefaultVersionProtected (a 409), with TorchServe's message."""
        self._request(
            "DELETE",
            "management",
            f"/models/{_q(name)}/{_q(version)}",
            params={"synchronous": True, "timeout": max(1, int(timeout or self.config.timeout * 6))},
            timeout=timeout or self.config.timeout * 6,
        )

    # ---- inference API ----------------------------------------------------------------------

    def ping(self, *, timeout: float | None = None) -> bool:
        try:
            payload = self._request("GET", "inference", "/ping", timeout=timeout, retries=0)
        except (TorchServeError, TorchServeUnavailable):
            return False
        return isinstance(payload, dict) and payload.get("status") == "Healthy"

    def predict(self, name: str, payload: Any, *, version: str | None = None, timeout: float | None = None) -> Any:
        """POST one JSON request to the model; returns the parsed JSON answer. Retries transient
        failures within about timeout * (retries + 1)."""
        return self._request("POST", "inference", _predictions_path(name, version), body=payload, timeout=timeout)

    def predict_fast(self, name: str, payload: Any, *, budget: float, version: str | None = None) -> Any:
        """The serving hot path: one attempt on this thread's kept-alive connection, no retry,
        everything (connect, send, answer) within `budget` seconds, else TorchServeTimeout.

        A minimal HTTP/1.1 exchange (_FastConnection) rather than the urllib3 pool: on this path
        urllib3's machinery, and http.client's header parsing through the email package, cost more
        CPU than the JSON in and out, and the web workers are CPU-bound. A kept-alive connection
        that TorchServe closed meanwhile is retried once on a new one."""
        path = _predictions_path(name, version)
        deadline = time.monotonic() + budget
        body = orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)
        auth_retried = False
        while True:
            status, data = self._fast_post(path, body, deadline)
            if 200 <= status < 300:
                return _parse(data)
            message, ts_type = _ts_message(_parse(data), status)
            if not auth_retried and self._key_refused(ts_type, "inference") and time.monotonic() < deadline:
                auth_retried = True
                continue
            raise _error_for(status, ts_type, message, self.config)

    def _fast_drop(self) -> None:
        conn: _FastConnection | None = getattr(self._fast, "conn", None)
        self._fast.conn = None
        if conn is not None:
            conn.close()

    def _fast_post(self, path: str, body: bytes, deadline: float) -> tuple[int, bytes]:
        headers = self._headers("inference")
        headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn: _FastConnection | None = getattr(self._fast, "conn", None)
            if conn is None:
                conn = self._fast.conn = _FastConnection(self.config.inference_url)
            reused = conn.connected
            try:
                status, data, keep_alive = conn.post(path, body, headers, deadline)
            except _StaleConnection as exc:
                self._fast_drop()
                if reused and attempt == 1 and time.monotonic() < deadline:
                    continue  # the kept-alive connection was closed by TorchServe: once more, fresh
                raise TorchServeUnavailable(
                    f"TorchServe at {self.config.inference_url} closed the connection on POST {path}: {exc}",
                    {"url": self.config.inference_url + path},
                ) from exc
            except (OSError, ValueError) as exc:  # ValueError: _BadAnswer, a malformed number
                self._fast_drop()
                cls = TorchServeTimeout if isinstance(exc, TimeoutError) else TorchServeUnavailable
                raise cls(
                    f"TorchServe at {self.config.inference_url} did not answer POST {path}: {_short(exc)}",
                    {"url": self.config.inference_url + path},
                ) from exc
            if not keep_alive:
                self._fast_drop()
            return status, data
        raise AssertionError("unreachable")  # pragma: no cover

    def metrics_text(self, *, timeout: float | None = None) -> str:
        """TorchServe's Prometheus metrics (no token needed on the metrics port)."""
        try:
            resp = self._http.request(
                "GET",
                f"{self.config.metrics_url}/metrics",
                timeout=urllib3.Timeout(total=timeout or self.config.timeout),
            )
        except (Urllib3HTTPError, OSError) as exc:
            raise TorchServeUnavailable(f"TorchServe metrics did not answer: {_short(exc)}") from exc
        return resp.data.decode("utf-8", "replace")

    def close(self) -> None:
        self._http.clear()
        self._fast_drop()


_clients: dict[tuple[int, TorchServeConfig], TorchServeClient] = {}
_clients_lock = threading.Lock()


def get_client(config: TorchServeConfig | None = None) -> TorchServeClient:
    """The process's client for `config` (default: from Django settings). A forked child gets
    its own pool: sockets shared across a fork would interleave answers."""
    config = config or TorchServeConfig.from_settings()
    key = (os.getpid(), config)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                for stale in [k for k in _clients if k[0] != key[0]]:
                    _clients.pop(stale, None)
                client = _clients[key] = TorchServeClient(config)
    return client


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _q(part: str) -> str:
    return quote(str(part), safe="")


def _predictions_path(name: str, version: str | None) -> str:
    return f"/predictions/{_q(name)}" + (f"/{_q(version)}" if version is not None else "")


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "..."


def _parse(data: bytes) -> Any:
    if not data:
        return None
    try:
        return orjson.loads(data)
    except ValueError:  # orjson.JSONDecodeError is one
        return data.decode("utf-8", "replace")


def _version_info(raw: dict[str, Any], default_version: str | None) -> ModelVersionInfo:
    workers = tuple(
        WorkerInfo(
            id=str(w.get("id", "")),
            status=str(w.get("status", "")),
            pid=w.get("pid") if isinstance(w.get("pid"), int) else None,
            memory_usage=int(w.get("memoryUsage") or 0),
        )
        for w in raw.get("workers", [])
    )
    version = str(raw.get("modelVersion", ""))
    return ModelVersionInfo(
        name=str(raw.get("modelName", "")),
        version=version,
        mar_url=str(raw.get("modelUrl", "")),
        is_default=version == default_version,
        min_workers=int(raw.get("minWorkers") or 0),
        max_workers=int(raw.get("maxWorkers") or 0),
        batch_size=int(raw.get("batchSize") or 1),
        max_batch_delay=int(raw.get("maxBatchDelay") or 0),
        response_timeout=int(raw.get("responseTimeout") or 0),
        workers=workers,
        pending_requests=int((raw.get("jobQueueStatus") or {}).get("pendingRequests") or 0),
    )


def _mar_url(mar: str | Path, model_store: Path) -> str:
    if isinstance(mar, Path) or not re.match(r"^[a-z][a-z0-9+.-]*://", str(mar)):
        path = Path(mar)
        try:
            if path.is_absolute() and path.resolve().parent == Path(model_store).resolve():
                return path.name
        except OSError:
            pass
        return str(path) if path.is_absolute() or len(path.parts) > 1 else path.name
    return str(mar)


def _manifest_version(mar: str | Path) -> str | None:
    """The version written into an archive we built (model_store/<name>-<version>.mar)."""
    match = re.match(r"^.+-([^-/]+)\.mar$", Path(str(mar)).name)
    return match.group(1) if match else None
