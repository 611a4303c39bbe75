"""predict_fast's own HTTP/1.1 exchange, against a canned server: framing, keep-alive, stale
connections, budgets. (The same path against a real TorchServe: test_torchserve.py.)"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from recadmin.modelops.torchserve import (
    TorchServeClient,
    TorchServeConfig,
    TorchServeTimeout,
    TorchServeUnavailable,
)


@dataclass
class CannedServer:
    """Answers each request read on a connection with the next canned answer (bytes), then does
    what the answer's `after` says: keep the connection, or close it."""

    answers: list[tuple[bytes, str]] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    def serve(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while self.answers:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                buf = rest[length:]
                answer, after = self.answers.pop(0)
                if after == "sleep":
                    time.sleep(1.0)
                conn.sendall(answer)
                if after == "close":
                    return


@pytest.fixture
def server() -> Iterator[CannedServer]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    canned = CannedServer(port=listener.getsockname()[1])
    threading.Thread(target=canned.serve, args=(listener,), daemon=True).start()
    yield canned
    listener.close()


def client_for(server: CannedServer, tmp_path: Path) -> TorchServeClient:
    url = f"http://127.0.0.1:{server.port}"
    return TorchServeClient(
        TorchServeConfig(
            inference_url=url,
            management_url=url,
            metrics_url=url,
            key_file=tmp_path / "key_file.json",
            token_auth=False,
            timeout=2.0,
            register_timeout=2.0,
            model_store=tmp_path,
            model_name="recommender",
        )
    )


def ok(body: object, *, extra: str = "") -> bytes:
    data = json.dumps(body).encode()
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n{extra}\r\n".encode() + data


ANSWER = [{"item": "sku-1", "score": 0.5}]


def test_it_sends_json_and_reuses_one_kept_alive_connection(server: CannedServer, tmp_path: Path) -> None:
    server.answers = [(ok(ANSWER), "keep"), (ok(ANSWER), "keep")]
    client = client_for(server, tmp_path)

    first = client.predict_fast("recommender", {"history": ["a"], "k": 1}, budget=2.0, version="3")
    second = client.predict_fast("recommender", {"history": ["b"], "k": 1}, budget=2.0, version="3")

    assert first == second == ANSWER
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /predictions/recommender/3 HTTP/1.1\r\n")
    assert server.requests[0].endswith(b'{"history":["a"],"k":1}')
    assert b"Content-Type: application/json" in server.requests[0]


def test_it_reads_a_chunked_answer(server: CannedServer, tmp_path: Path) -> None:
    data = json.dumps(ANSWER).encode()
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"%x\r\n%s\r\n" % (5, data[:5]) + b"%x;ext=1\r\n%s\r\n" % (len(data) - 5, data[5:]) + b"0\r\n\r\n"
    server.answers = [(chunked, "keep"), (ok(ANSWER), "keep")]
    client = client_for(server, tmp_path)

    assert client.predict_fast("recommender", {"history": ["a"]}, budget=2.0) == ANSWER
    assert client.predict_fast("recommender", {"history": ["a"]}, budget=2.0) == ANSWER
    assert server.connections == 1


def test_an_answer_without_length_ends_when_the_server_closes(server: CannedServer, tmp_path: Path) -> None:
    server.answers = [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + json.dumps(ANSWER).encode(), "close"),
        (ok(ANSWER), "keep"),
    ]
    client = client_for(server, tmp_path)

    assert client.predict_fast("recommender", {"history": ["a"]}, budget=2.0) == ANSWER
    assert client.predict_fast("recommender", {"history": ["a"]}, budget=2.0) == ANSWER
    assert server.connections == 2  # "Connection: close" was honoured


def test_a_kept_alive_connection_the_server_closed_is_retried_once_on_a_new_one(
    server: CannedServer, tmp_path: Path
) -> None:
    server.answers = [(ok(ANSWER), "close"), (ok(ANSWER), "keep")]
    client = client_for(server, tmp_path)
    client.predict_fast("recommender", {"history": ["a"]}, budget=2.0)
    time.sleep(0.05)  # the server has closed its end meanwhile

    assert client.predict_fast("recommender", {"history": ["a"]}, budget=2.0) == ANSWER
    assert server.connections == 2


def test_an_error_status_becomes_the_adapters_error(server: CannedServer, tmp_path: Path) -> None:
    body = json.dumps({"code": 503, "type": "ServiceUnavailableException", "message": "no worker"}).encode()
    server.answers = [(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body), "keep")]

    with pytest.raises(TorchServeUnavailable, match="no worker"):
        client_for(server, tmp_path).predict_fast("recommender", {"history": ["a"]}, budget=2.0)


def test_a_slow_answer_times_out_within_the_budget(server: CannedServer, tmp_path: Path) -> None:
    server.answers = [(ok(ANSWER), "sleep")]
    client = client_for(server, tmp_path)
    started = time.monotonic()

    with pytest.raises(TorchServeTimeout):
        client.predict_fast("recommender", {"history": ["a"]}, budget=0.2)
    assert time.monotonic() - started < 0.6


def test_a_garbled_answer_is_unavailable_not_a_crash(server: CannedServer, tmp_path: Path) -> None:
    server.answers = [(b"SMTP ready\r\n\r\n", "close")]

    with pytest.raises(TorchServeUnavailable, match="bad status line"):
        client_for(server, tmp_path).predict_fast("recommender", {"history": ["a"]}, budget=2.0)
