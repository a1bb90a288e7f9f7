"""Database engine creation and migrations.

SQLite (a file in the data directory) by default, PostgreSQL when a URL is given; the same
code and the same Alembic migrations serve both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from arkor.store.changes import ChangeFeed, PostgresChangeListener

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (idempotent; safe on every start)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


class Database:
    """An engine plus a session factory; one per app."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.changes = ChangeFeed()
        self.changes.install(self._sessions, notify=self.is_postgres)
        self._listener: PostgresChangeListener | None = None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def listen_for_changes(self) -> None:
        """Hear other processes' changes (PostgreSQL); a no-op on SQLite (one process)."""
        if self.is_postgres and self._listener is None:
            url = self.engine.url.set(drivername="postgresql")
            self._listener = PostgresChangeListener(
                url.render_as_string(hide_password=False), self.changes
            )
            self._listener.start()

    @contextmanager
    def turn(self, key: int) -> Iterator[bool]:
        """Whether this process may do a periodic job now: True while it holds PostgreSQL's
        advisory lock ``key`` (another server holding it: False), always True on SQLite (one
        process). For sweeps that several servers of one installation all run. Advisory locks
        are per database, so the lock is ``key`` within this installation's schema: another
        installation in another schema of the database takes its own turns."""
        if not self.is_postgres:
            yield True
            return
        with self.engine.connect() as connection:
            schema = connection.execute(text("SELECT current_schema()")).scalar()
            lock = {"key": schema_lock_key(str(schema), key)}
            mine = bool(connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), lock).scalar())
            connection.commit()
            try:
                yield mine
            finally:
                if mine:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), lock)
                    connection.commit()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self.engine.dispose()


def advisory_lock_key(name: str) -> int:
    """A PostgreSQL advisory-lock number for ``name``: a signed 64-bit integer, the first
    eight bytes of its SHA-256."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def schema_lock_key(schema: str, key: int) -> int:
    """The advisory-lock number of ``key`` within ``schema``."""
    return advisory_lock_key(f"{schema}\0{key}")
