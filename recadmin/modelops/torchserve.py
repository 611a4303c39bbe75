"""The one adapter to TorchServe (0.12): management API, inference API, key file, process.

Nothing else in the project knows TorchServe's URLs, JSON shapes, key file or command line: they
call the typed functions here and get dataclasses back or one of the exceptions below. TorchServe
is in limited maintenance, so this module is the seam where another model server can be swapped in.

Usable without Django: build a `TorchServeConfig` by hand (bench scripts, the test fixture) or with
`TorchServeConfig.from_settings()` inside the project.

HTTP goes through one urllib3 pool per process (`get_client()`): kept-alive connections, thread
safe, and rebuilt after a fork (gunicorn and Celery fork after import). Every call has a timeout;
only transient failures (connection errors, 502/503/504) are retried, with backoff.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import NewConnectionError, ProtocolError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError

from recadmin.core.errors import ApplicationError, Conflict, NotFound, ServiceUnavailable

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
#: The repo's config.properties: the defaults every TorchServe we start is based on.
BASE_PROPERTIES = REPO_ROOT / "handlers" / "config.properties"
# TorchServe's log4j2 configuration without per-request lines (see the file for why).
LOG_CONFIG = REPO_ROOT / "handlers" / "log4j2.xml"
PID_FILE_NAME = "torchserve.pid"
KEY_FILE_NAME = "key_file.json"  # TorchServe writes it into its working directory; the name is fixed.
_TS_MAIN_CLASS = "org.pytorch.serve.ModelServer"
_TRANSIENT_STATUS = frozenset({502, 503, 504})
# 400s of the management API (bad parameters, unknown version), as opposed to a handler's 400.
_MANAGEMENT_400_TYPES = frozenset({"BadRequestException", "InvalidModelVersionException", "InvalidKeyException"})


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class TorchServeError(ApplicationError):
    """TorchServe answered but refused: the message is TorchServe's own."""

    status_code = 502
    default_message = "TorchServe rejected the request."

    def __init__(
        self,
        message: str | None = None,
        extra: dict[str, Any] | None = None,
        *,
        ts_status: int | None = None,
        ts_type: str | None = None,
    ) -> None:
        extra = dict(extra or {})
        if ts_status is not None:
            extra["torchserve_status"] = ts_status
        if ts_type:
            extra["torchserve_type"] = ts_type
        self.ts_status = ts_status
        self.ts_type = ts_type
        super().__init__(message, extra)


class ModelNotRegistered(TorchServeError, NotFound):
    status_code = 404
    default_message = "TorchServe has no such model or version."


class ModelVersionConflict(TorchServeError, Conflict):
    status_code = 409
    default_message = "TorchServe already has this model version."


class DefaultVersionProtected(TorchServeError, Conflict):
    """TorchServe keeps a model's default version while other versions exist: set another
    default first."""

    status_code = 409
    default_message = "The default version cannot be removed while other versions exist."


class PredictionRejected(TorchServeError):
    """The handler refused the request (bad input): a 400 from the model, not a server fault."""

    status_code = 400
    default_message = "The model rejected the request."


class TorchServeAuthError(TorchServeError):
    default_message = "TorchServe refused our token: check TORCHSERVE_KEY_FILE and TORCHSERVE_TOKEN_AUTH."


class TorchServeUnavailable(ServiceUnavailable):
    """TorchServe did not answer (down, overloaded, timed out). Callers may retry later."""

    default_message = "TorchServe is unavailable."


class TorchServeTimeout(TorchServeUnavailable):
    default_message = "TorchServe did not answer within the time budget."


class WorkersNotReady(TorchServeUnavailable):
    default_message = "The model's workers did not become ready in time."


class TorchServeStartError(TorchServeUnavailable):
    default_message = "TorchServe could not be started."


# --------------------------------------------------------------------------------------------
# Configuration and result types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchServeConfig:
    inference_url: str = "http://127.0.0.1:8080"
    management_url: str = "http://127.0.0.1:8081"
    metrics_url: str = "http://127.0.0.1:8082"
    #: Where TorchServe writes key_file.json: its working directory when we start it.
    key_file: Path = Path("var/torchserve") / KEY_FILE_NAME
    token_auth: bool = True
    timeout: float = 5.0
    register_timeout: float = 300.0
    model_store: Path = Path("model_store")
    model_name: str = "recommender"
    #: TorchServe always starts its gRPC APIs too (unused here, but their ports must be free).
    grpc_inference_port: int = 7070
    grpc_management_port: int = 7071
    #: Transient failures are retried this many times (so up to retries + 1 attempts).
    retries: int = 2
    backoff: float = 0.2

    @classmethod
    def from_settings(cls, settings: Any = None) -> TorchServeConfig:
        if settings is None:
            from django.conf import settings as django_settings

            settings = django_settings
        return cls(
            inference_url=str(settings.TORCHSERVE_INFERENCE_URL).rstrip("/"),
            management_url=str(settings.TORCHSERVE_MANAGEMENT_URL).rstrip("/"),
            metrics_url=str(settings.TORCHSERVE_METRICS_URL).rstrip("/"),
            key_file=Path(settings.TORCHSERVE_KEY_FILE),
            token_auth=bool(settings.TORCHSERVE_TOKEN_AUTH),
            timeout=float(settings.TORCHSERVE_TIMEOUT),
            register_timeout=float(settings.TORCHSERVE_REGISTER_TIMEOUT),
            model_store=Path(settings.MODEL_STORE),
            model_name=str(settings.RECOMMENDER_MODEL_NAME),
            # Not in settings.py (nothing of ours talks gRPC); a test or a second instance on the
            # same machine sets them to keep TorchServe's gRPC listeners apart.
            grpc_inference_port=int(getattr(settings, "TORCHSERVE_GRPC_INFERENCE_PORT", 7070)),
            grpc_management_port=int(getattr(settings, "TORCHSERVE_GRPC_MANAGEMENT_PORT", 7071)),
        )

    @property
    def run_dir(self) -> Path:
        """The working directory of a TorchServe we start: key file, pid file, logs, sockets."""
        return Path(self.key_file).parent

    def as_settings(self) -> dict[str, Any]:
        """The Django settings that point the project at this TorchServe (for override_settings)."""
        return {
            "TORCHSERVE_INFERENCE_URL": self.inference_url,
            "TORCHSERVE_MANAGEMENT_URL": self.management_url,
            "TORCHSERVE_METRICS_URL": self.metrics_url,
            "TORCHSERVE_KEY_FILE": str(self.key_file),
            "TORCHSERVE_TOKEN_AUTH": self.token_auth,
            "TORCHSERVE_TIMEOUT": self.timeout,
            "TORCHSERVE_REGISTER_TIMEOUT": self.register_timeout,
            "MODEL_STORE": Path(self.model_store),
            "RECOMMENDER_MODEL_NAME": self.model_name,
            "TORCHSERVE_GRPC_INFERENCE_PORT": self.grpc_inference_port,
            "TORCHSERVE_GRPC_MANAGEMENT_PORT": self.grpc_management_port,
        }


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


# --------------------------------------------------------------------------------------------
# Key file
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


class _StaleConnection(Exception):
    """The server closed a connection before answering (a kept-alive one may be retried)."""


class _BadAnswer(ValueError):
    """An answer that is not the HTTP/1.1 predict_fast expects (malformed or cut short)."""


class _FastConnection:
    """One kept-alive HTTP/1.1 connection for predict_fast (one per thread): a request is written
    in one send, the answer's status line and headers are split by hand, the body is read by
    Content-Length or chunks. Every socket operation gets what is left until `deadline`."""

    _MAX_HEAD = 64 * 1024

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        self.tls = url.scheme == "https"
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if self.tls else 80)
        self.prefix = url.path.rstrip("/")
        self.host_header = url.netloc
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock = None
        self.buf.clear()

    def post(self, path: str, body: bytes, headers: dict[str, str], deadline: float) -> tuple[int, bytes, bool]:
        """(status, body, whether the connection stays open)."""
        if self.sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=_left(deadline))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                import ssl

                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
            self.sock = sock
        head = f"POST {self.prefix}{path} HTTP/1.1\r\nHost: {self.host_header}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.sock.settimeout(_left(deadline))
        try:
            self.sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _StaleConnection(str(exc)) from exc
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > self._MAX_HEAD:
                raise _BadAnswer("the answer's headers are too large")
            self._recv(deadline, stale_ok=not buf)
        lines = bytes(buf[:end]).split(b"\r\n")
        del buf[: end + 4]
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise _BadAnswer(f"bad status line {lines[0][:100]!r}")
        status = int(parts[1])
        fields: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        keep_alive = parts[0] == b"HTTP/1.1" and fields.get(b"connection", b"").lower() != b"close"
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            data = self._read_chunked(deadline)
        elif b"content-length" in fields:
            length = int(fields[b"content-length"])
            while len(buf) < length:
                self._recv(deadline)
            data = bytes(buf[:length])
            del buf[:length]
        else:  # the body ends when the server closes the connection
            while self._recv(deadline, until_closed=True):
                pass
            data, keep_alive = bytes(buf), False
            buf.clear()
        return status, data, keep_alive

    def _recv(self, deadline: float, *, stale_ok: bool = False, until_closed: bool = False) -> bool:
        assert self.sock is not None
        self.sock.settimeout(_left(deadline))
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError as exc:
            if stale_ok:
                raise _StaleConnection(str(exc)) from exc
            raise
        if not chunk:
            if until_closed:
                return False
            if stale_ok:
                raise _StaleConnection("closed before answering")
            raise _BadAnswer(f"connection closed mid-answer ({len(self.buf)} bytes read)")
        self.buf += chunk
        return True

    def _read_chunked(self, deadline: float) -> bytes:
        buf, out = self.buf, bytearray()
        while True:
            while (eol := buf.find(b"\r\n")) < 0:
                self._recv(deadline)
            size = int(bytes(buf[:eol]).split(b";", 1)[0], 16)
            del buf[: eol + 2]
            if size == 0:
                while True:  # trailer lines, up to an empty one
                    while (eol := buf.find(b"\r\n")) < 0:
                        self._recv(deadline)
                    del buf[: eol + 2]
                    if eol == 0:
                        return bytes(out)
            while len(buf) < size + 2:
                self._recv(deadline)
            out += buf[:size]
            del buf[: size + 2]


def _left(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("no time left in the budget")
    return remaining


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

    def predict(
        self, name: str, payload: Any, *, version: str | None = None, timeout: float | None = None
    ) -> Any:
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
        body = json.dumps(payload, separators=(",", ":")).encode()
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


# --------------------------------------------------------------------------------------------
# Process management
# --------------------------------------------------------------------------------------------


@dataclass
class TorchServeHandle:
    """A TorchServe process started by `torchserve_start`."""

    config: TorchServeConfig
    pid: int
    run_dir: Path
    config_file: Path
    log_file: Path
    started_in: float = 0.0  # seconds from launch until the management API answered
    models: tuple[str, ...] = field(default_factory=tuple)

    @property
    def client(self) -> TorchServeClient:
        return get_client(self.config)

    def is_running(self) -> bool:
        return _is_torchserve_pid(self.pid)

    def stop(self, *, timeout: float = 30.0) -> bool:
        return torchserve_stop(self.config, timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_file, lines) + _tail(self.run_dir / "logs" / "ts_log.log", lines)


@dataclass(frozen=True)
class TorchServeStatus:
    running: bool
    pid: int | None
    reachable: bool
    versions: tuple[ModelVersionInfo, ...] = ()
    error: str | None = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def config_on_free_ports(run_dir: Path, model_store: Path, **overrides: Any) -> TorchServeConfig:
    """A loopback config on three free ports with its key file (and so its cwd) in run_dir."""
    ports = [free_port() for _ in range(5)]
    while len(set(ports)) < 5:
        ports = [free_port() for _ in range(5)]
    return TorchServeConfig(
        inference_url=f"http://127.0.0.1:{ports[0]}",
        management_url=f"http://127.0.0.1:{ports[1]}",
        metrics_url=f"http://127.0.0.1:{ports[2]}",
        grpc_inference_port=ports[3],
        grpc_management_port=ports[4],
        key_file=Path(run_dir) / KEY_FILE_NAME,
        model_store=Path(model_store),
        **overrides,
    )


def read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def render_properties(
    config: TorchServeConfig, *, base: Path = BASE_PROPERTIES, extra: dict[str, Any] | None = None
) -> str:
    """The repo's config.properties with the addresses, store and auth of `config`."""
    props = read_properties(base) if Path(base).is_file() else {}
    props.update(
        {
            "inference_address": config.inference_url,
            "management_address": config.management_url,
            "metrics_address": config.metrics_url,
            "grpc_inference_address": _host_of(config.inference_url),
            "grpc_management_address": _host_of(config.management_url),
            "grpc_inference_port": str(config.grpc_inference_port),
            "grpc_management_port": str(config.grpc_management_port),
            "model_store": str(Path(config.model_store).resolve()),
            "enable_model_api": "true",
            "disable_token_authorization": "false" if config.token_auth else "true",
        }
    )
    props.update({k: _param(v) for k, v in (extra or {}).items()})
    lines = ["# Written by recadmin.modelops.torchserve.torchserve_start from handlers/config.properties."]
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


def read_pid(config: TorchServeConfig) -> int | None:
    path = config.run_dir / PID_FILE_NAME
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _is_torchserve_pid(pid) else None


def torchserve_start(
    config: TorchServeConfig,
    *,
    models: Sequence[str] = (),
    base_properties: Path = BASE_PROPERTIES,
    extra_properties: dict[str, Any] | None = None,
    ready_timeout: float = 60.0,
    wait_for_models: bool = True,
    stop_with_parent: bool = False,
) -> TorchServeHandle:
    """Start TorchServe in the background with its cwd in config.run_dir (key file, logs,
    sockets, unpacked models and TorchServe's own pid file all live there, so several instances
    can run side by side), wait until the management API answers, write run_dir/torchserve.pid.

    `models`: names or name=file.mar to load at start ("ALL" for the whole store); with
    wait_for_models, waits until each has a READY worker. stop_with_parent: a tiny watchdog
    kills TorchServe when this process dies without stopping it (a killed test run)."""
    run_dir = config.run_dir.resolve()
    existing = read_pid(config)
    if existing is not None:
        raise TorchServeStartError(f"TorchServe is already running from {run_dir} (pid {existing}).")
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        raise TorchServeStartError("Java 17 is needed to run TorchServe and was not found on PATH.")
    store = Path(config.model_store).resolve()
    store.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "tmp"
    logs = run_dir / "logs"
    for d in (run_dir, tmp, logs):
        d.mkdir(parents=True, exist_ok=True)
    (run_dir / KEY_FILE_NAME).unlink(missing_ok=True)  # a stale key would pass for a live one
    config_file = run_dir / "config.properties"
    config_file.write_text(render_properties(config, base=base_properties, extra=extra_properties))
    cmd = [
        _torchserve_bin(),
        "--start",
        "--ncs",
        "--ts-config",
        str(config_file),
        "--model-store",
        str(store),
        "--enable-model-api",
    ]
    if LOG_CONFIG.is_file():
        cmd += ["--log-config", str(LOG_CONFIG)]
    if not config.token_auth:
        cmd.append("--disable-token-auth")
    if models:
        cmd += ["--models", *models]
    env = dict(os.environ)
    env.pop("TS_CONFIG_FILE", None)
    # Workers must import the model code the archive carries (TorchServe puts the unpacked model
    # dir on their path), never a checkout that a PYTHONPATH would put in front of it.
    env.pop("PYTHONPATH", None)
    # The CLI keeps its pid file in the temp dir and the JVM its sockets and unpacked archives:
    # one private temp dir per instance keeps instances (tests, dev server) apart.
    env.update({"TMPDIR": str(tmp), "TEMP": str(tmp), "LOG_LOCATION": str(logs), "METRICS_LOCATION": str(logs)})
    log_file = run_dir / "torchserve.out"
    started = time.monotonic()
    with open(log_file, "ab") as out:
        cli = subprocess.Popen(
            cmd, cwd=run_dir, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        cli.wait(timeout=30)
    except subprocess.TimeoutExpired:
        cli.kill()
        raise TorchServeStartError(f"torchserve --start hung; see {log_file}") from None
    pid = _read_int(tmp / ".model_server.pid")
    if cli.returncode != 0 or pid is None:
        raise TorchServeStartError(f"torchserve --start failed (exit {cli.returncode}): {_tail(log_file, 20)}")
    (run_dir / PID_FILE_NAME).write_text(f"{pid}\n")
    if stop_with_parent:
        subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(pid)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
    handle = TorchServeHandle(
        config=config, pid=pid, run_dir=run_dir, config_file=config_file, log_file=log_file, models=tuple(models)
    )
    client = TorchServeClient(replace(config, retries=0))
    deadline = started + ready_timeout
    try:
        while True:
            if not _is_torchserve_pid(pid):
                raise TorchServeStartError(f"TorchServe exited during start-up: {handle.log_tail(20)}")
            try:
                client._request("GET", "management", "/models", timeout=1.0, retries=0)
                break
            except (TorchServeUnavailable, TorchServeError):
                pass
            if time.monotonic() > deadline:
                raise TorchServeStartError(
                    f"TorchServe did not answer within {ready_timeout:.0f}s: {handle.log_tail(20)}"
                )
            time.sleep(0.05)
        handle.started_in = time.monotonic() - started
        if models and wait_for_models:
            for spec in models:
                if spec != "ALL":
                    name = spec.split("=", 1)[0]
                    client.wait_until_ready(name, timeout=max(1.0, deadline - time.monotonic()))
    except BaseException:
        torchserve_stop(config, timeout=10)
        raise
    finally:
        client.close()
    logger.info("TorchServe pid %s up in %.2fs at %s", pid, handle.started_in, config.management_url)
    return handle


# Runs as `python -c _WATCHDOG <parent pid> <torchserve pid>`: polls both; when the parent is gone
# first, kills TorchServe's process group (its own session, see torchserve_start).
_WATCHDOG = """
import os, signal, sys, time
parent, pid = int(sys.argv[1]), int(sys.argv[2])
pgid = os.getpgid(pid)
def alive(p):
    try:
        os.kill(p, 0)
    except ProcessLookupError:
        return False
    return True
while alive(pid):
    if not alive(parent):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        break
    time.sleep(1)
"""


def torchserve_stop(config: TorchServeConfig, *, timeout: float = 30.0, graceful: bool = True) -> bool:
    """Stop the TorchServe started from config.run_dir: SIGTERM (TorchServe stops its workers;
    takes about 2.5 s), then SIGKILL to its process group after `timeout`. graceful=False kills
    at once, as a crash would (tests). False when none was running."""
    run_dir = config.run_dir
    pid = read_pid(config)
    stopped = False
    if pid is not None:
        stopped = True
        try:
            # torchserve_start runs it in a session of its own: the group is TorchServe and its
            # workers only. Never signal our own group.
            pgid: int | None = os.getpgid(pid)
            if pgid == os.getpgrp():
                pgid = None
        except ProcessLookupError:
            pgid = None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM if graceful else signal.SIGKILL)
        deadline = time.monotonic() + (timeout if graceful else 0)
        while _is_torchserve_pid(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_torchserve_pid(pid) or not graceful:
            if graceful:
                logger.warning("TorchServe pid %s ignored SIGTERM for %.0fs: killing its process group", pid, timeout)
            if pgid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5
            while _is_torchserve_pid(pid) and time.monotonic() < kill_deadline:
                time.sleep(0.05)
    for stale in (run_dir / PID_FILE_NAME, run_dir / KEY_FILE_NAME, run_dir / "tmp" / ".model_server.pid"):
        stale.unlink(missing_ok=True)
    # Drop pooled connections to the dead server so the next call fails fast or reconnects.
    for (owner, cfg), client in list(_clients.items()):
        if owner == os.getpid() and cfg.management_url == config.management_url:
            client.close()
    return stopped


def torchserve_status(config: TorchServeConfig) -> TorchServeStatus:
    """Whether our process runs, whether the API answers, and every loaded version with workers."""
    pid = read_pid(config)
    client = get_client(config)
    try:
        versions: list[ModelVersionInfo] = []
        for summary in client.list_models():
            versions += client.describe(summary.name)
    except (TorchServeError, TorchServeUnavailable) as exc:
        return TorchServeStatus(running=pid is not None, pid=pid, reachable=False, error=exc.message)
    return TorchServeStatus(running=pid is not None, pid=pid, reachable=True, versions=tuple(versions))


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _torchserve_bin() -> str:
    local = Path(sys.executable).parent / "torchserve"
    if local.exists():
        return str(local)
    found = shutil.which("torchserve")
    if not found:
        raise TorchServeStartError("The torchserve command is not installed in this environment.")
    return found


def _is_torchserve_pid(pid: int) -> bool:
    import psutil  # TorchServe's own dependency, so present wherever TorchServe is

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return _TS_MAIN_CLASS in proc.cmdline()
    except psutil.Error:
        return False


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _tail(path: Path, lines: int) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:]) + "\n"


def _host_of(url: str) -> str:
    return urlsplit(url).hostname or "127.0.0.1"


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
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def _ts_message(payload: Any, status: int) -> tuple[str, str | None]:
    if isinstance(payload, dict):
        return str(payload.get("message") or payload), payload.get("type")
    return (str(payload) if payload else f"HTTP {status}"), None


def _error_for(status: int, ts_type: str | None, message: str, config: TorchServeConfig) -> ApplicationError:
    if ts_type == "InvalidKeyException":
        where = f"key file {config.key_file}" if config.token_auth else "token auth is off in our settings"
        return TorchServeAuthError(
            f"TorchServe refused our token ({where}): {message}", ts_status=status, ts_type=ts_type
        )
    if status in _TRANSIENT_STATUS:
        extra = {"torchserve_status": status, "torchserve_type": ts_type}
        return TorchServeUnavailable(f"TorchServe: {message}", extra)
    if status == 404:
        return ModelNotRegistered(message, ts_status=status, ts_type=ts_type)
    if status == 403 and ts_type == "InvalidModelVersionException":
        return DefaultVersionProtected(message, ts_status=status, ts_type=ts_type)
    if status == 409:
        return ModelVersionConflict(message, ts_status=status, ts_type=ts_type)
    if status == 400 and ts_type not in _MANAGEMENT_400_TYPES:
        # What our handler raises as PredictionException(message, 400): the request was bad.
        return PredictionRejected(message, ts_status=status, ts_type=ts_type)
    return TorchServeError(message, ts_status=status, ts_type=ts_type)


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


__all__ = [
    "DefaultVersionProtected",
    "ModelNotRegistered",
    "ModelSummary",
    "ModelVersionConflict",
    "ModelVersionInfo",
    "PredictionRejected",
    "Registration",
    "TorchServeAuthError",
    "TorchServeClient",
    "TorchServeConfig",
    "TorchServeError",
    "TorchServeHandle",
    "TorchServeStartError",
    "TorchServeStatus",
    "TorchServeTimeout",
    "TorchServeUnavailable",
    "WorkerInfo",
    "WorkersNotReady",
    "config_on_free_ports",
    "free_port",
    "get_client",
    "torchserve_start",
    "torchserve_status",
    "torchserve_stop",
]
