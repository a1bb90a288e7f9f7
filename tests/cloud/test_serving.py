"""The server as ``arkor cloud serve`` runs it: slow or idle sockets are closed, connections
are bounded, shutdown is bounded, over raw sockets against real uvicorn."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from arkor.cloud.serving import server_config
from arkor.cloud.settings import Settings
from arkor.server import create_app
from tests.servers import LiveServer, free_port

SLACK = 2.0
ARKOR = str(Path(sys.executable).with_name("arkor"))
GET = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def fast_settings(data_dir: Path, **overrides: int) -> Settings:
    return Settings(data_dir=data_dir, **{"header_timeout_s": 1, "keep_alive_s": 1,
                                          "body_timeout_s": 1, **overrides})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = fast_settings(tmp_path_factory.mktemp("serving"))
    with LiveServer(create_app(settings), settings=settings) as url:
        yield url


def connect(url: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    sock.settimeout(1 + SLACK + 3)
    return sock


def closed_after(sock: socket.socket) -> tuple[bytes, float]:
    """What the server sent before it closed the connection, and when it closed it."""
    began, data = time.monotonic(), b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - began


def response_head(sock: socket.socket) -> bytes:
    """One whole response (the connection stays usable); its status line and headers."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().partition(b"content-length: ")[2].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head.lower()


def test_half_a_header_line_is_closed_after_the_header_timeout(server: str) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half")
        data, elapsed = closed_after(sock)
    assert data == b"" and 0.9 < elapsed < 1 + SLACK


def test_a_silent_connection_is_closed_after_the_header_timeout(server: str) -> None:
    with connect(server) as sock:
        data, elapsed = closed_after(sock)
    assert data == b"" and 0.9 < elapsed < 1 + SLACK


def test_headers_dripped_a_byte_at_a_time_do_not_keep_the_connection(server: str) -> None:
    began = time.monotonic()
    with connect(server) as sock:
        sock.settimeout(0.25)
        for byte in GET:  # ~40 bytes at 4 a second: 10 s if each byte moved the deadline
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:  # reset or broken pipe: closed just the same
                break
        else:
            pytest.fail("the server waited for headers sent a byte at a time")
    assert time.monotonic() - began < 1 + SLACK


def test_a_stalled_body_is_408_and_closed(server: str) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /v1/auth/anonymous HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"ki")
        data, elapsed = closed_after(sock)
    assert data.startswith(b"HTTP/1.1 408 ") and 0.9 < elapsed < 1 + SLACK
    assert json.loads(data.partition(b"\r\n\r\n")[2])["error"].startswith("The request body")


def test_an_idle_keep_alive_connection_is_closed(server: str) -> None:
    with connect(server) as sock:
        sock.sendall(GET)
        first = response_head(sock)
        assert first.startswith(b"http/1.1 200 ") and b"connection: close" not in first
        sock.sendall(GET)  # still open for a second request
        assert response_head(sock).startswith(b"http/1.1 200 ")
        data, elapsed = closed_after(sock)
    assert data == b"" and 0.9 < elapsed < 1 + SLACK


def test_requests_beyond_max_connections_are_503(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, max_connections=3, header_timeout_s=30)
    with LiveServer(create_app(settings), settings=settings) as url:
        idle = [connect(url), connect(url)]
        try:
            time.sleep(0.2)
            with connect(url) as sock:
                sock.sendall(GET)
                assert sock.recv(65536).startswith(b"HTTP/1.1 503 ")
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 5
        while httpx.get(url + "/healthz").status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert httpx.get(url + "/healthz").status_code == 200


def test_shutdown_waits_no_longer_than_the_shutdown_timeout(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, body_timeout_s=60, shutdown_timeout_s=1)
    live = LiveServer(create_app(settings), settings=settings)
    with connect(live.__enter__()) as sock:
        sock.sendall(b"POST /v1/auth/anonymous HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Length: 50\r\n\r\n{")  # a request that would hold on for 60 s
        time.sleep(0.2)
        began = time.monotonic()
        live.__exit__(None, None, None)
        elapsed = time.monotonic() - began
    assert not live._thread.is_alive() and elapsed < 1 + SLACK


def test_server_config_carries_the_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, keep_alive_s=7, max_connections=50,
                        shutdown_timeout_s=3, header_timeout_s=4, trusted_proxies=("10.0.0.1",))
    config = server_config(object(), settings, host="127.0.0.1", port=1)  # type: ignore[arg-type]
    assert (config.timeout_keep_alive, config.limit_concurrency,
            config.timeout_graceful_shutdown) == (7, 50, 3)
    assert config.http.timeout_headers == 4  # type: ignore[union-attr]
    assert config.forwarded_allow_ips == ["10.0.0.1"] and config.access_log is False


def test_arkor_cloud_serve_runs_hardened_and_logs_json(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "ARKOR_DATA_DIR": str(tmp_path / "data"), "ARKOR_LOG_FORMAT": "json",
           "ARKOR_HEADER_TIMEOUT_S": "1", "ARKOR_SHUTDOWN_TIMEOUT_S": "1",
           "ARKOR_BODY_TIMEOUT_S": "60"}
    proc = subprocess.Popen([ARKOR, "cloud", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                token = httpx.post(url + "/v1/auth/anonymous", json={},
                                   headers={"X-Arkor-Client": "arkor/0.1.0"}).json()["token"]
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "arkor cloud serve did not start"
                time.sleep(0.2)
        with connect(url) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Ha")
            assert closed_after(sock)[1] < 1 + SLACK
        stalled = connect(url)
        stalled.sendall(b"POST /v1/auth/anonymous HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Length: 50\r\n\r\n{")
        time.sleep(0.2)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=1 + SLACK + 5)
        assert time.monotonic() - began < 1 + SLACK + 1
        stalled.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "arkor.access"]
    assert access[0]["method"] == "POST" and access[0]["path"] == "/v1/auth/anonymous"
    assert access[0]["status"] == 200 and access[0]["request_id"].startswith("req_")
    assert not any(line["logger"] == "uvicorn.access" for line in lines)
    assert token not in err
