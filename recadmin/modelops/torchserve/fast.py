"""The serving hot path's HTTP: one kept-alive HTTP/1.1 connection per thread, parsed by hand.

On this path urllib3's machinery, and http.client's header parsing through the email package, cost
more CPU than the JSON in and out, and the web workers are CPU-bound (see TorchServeClient.predict_fast).
"""

from __future__ import annotations

import contextlib
import socket
import time
from urllib.parse import urlsplit


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
