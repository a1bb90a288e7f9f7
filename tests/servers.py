"""Real servers for tests: uvicorn in a background thread on a free loopback port, and
per-test databases (a SQLite file, or a fresh PostgreSQL schema)."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy
import uvicorn

POSTGRES_ENV = "ARKOR_TEST_POSTGRES_URL"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """``with LiveServer(app) as url:`` serves ``app`` over real HTTP until the block ends.

    With ``settings``, uvicorn is configured as ``arkor cloud serve`` configures it.
    """

    def __init__(self, app: Any, *, port: int | None = None, settings: Any = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if settings is not None:
            from arkor.cloud.serving import server_config

            config = server_config(app, settings, host="127.0.0.1", port=self.port)
        else:
            config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                    lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"test server on port {self.port} did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *_exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@contextmanager
def postgres_schema_url() -> Iterator[str]:
    """A URL whose connections use a new, empty schema; the schema is dropped afterwards.

    Fails (never skips) when ``ARKOR_TEST_POSTGRES_URL`` is set but PostgreSQL is down.
    """
    base = os.environ[POSTGRES_ENV]
    from arkor.store.db import normalize_url

    base = normalize_url(base)
    schema = f"arkor_test_{secrets.token_hex(6)}"
    admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def database_url(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'arkor.sqlite3'}"
    else:
        with postgres_schema_url() as url:
            yield url
