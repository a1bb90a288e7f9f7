"""Tell caches when deployments or their keys change, at commit time.

The edge caches deployments and key digests in memory; it must never serve a revoked key,
a disabled or deleted deployment, or an old target after the change commits. Every ORM
session of a :class:`~arkor.store.db.Database` reports committed changes to deployments,
deployment keys, jobs and custom domains to the feed's subscribers in this process, before
the request that made the change returns. On PostgreSQL the same transaction also sends
``NOTIFY arkor_changes`` naming its schema; :class:`PostgresChangeListener` turns that into
a publish in every other process of the same schema, so several servers behind a load
balancer stay in step (within the time it takes the notification to arrive, milliseconds),
and another installation in another schema of the same database is not disturbed. Bulk
``UPDATE`` statements such as the edge's own ``lastUsedAt`` flush do not count: they change
nothing the edge caches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session, sessionmaker

from arkor.store.tables import CustomDomain, Deployment, DeploymentKey, Job

log = logging.getLogger("arkor.store")
WATCHED = (Deployment, DeploymentKey, Job, CustomDomain)
_PENDING = "arkor_changed"
CHANNEL = "arkor_changes"
RECONNECT_SECONDS = 1.0


class ChangeFeed:
    def __init__(self) -> None:
        self._subscribers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def publish(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback()
            except Exception:
                log.exception("change subscriber failed")

    def install(self, sessions: sessionmaker[Session], *, notify: bool = False) -> None:
        """Watch ``sessions``; with ``notify`` (PostgreSQL) also tell other processes."""

        @event.listens_for(sessions, "after_flush")
        def _collect(session: Session, _context: Any) -> None:
            touched = [*session.new, *session.dirty, *session.deleted]
            if not any(isinstance(obj, WATCHED) for obj in touched):
                return
            if notify and not session.info.get(_PENDING):
                # Transactional: delivered at commit, dropped on rollback.
                # The payload names the schema: channels are per database, and another
                # installation in another schema of it must not hear this one's changes.
                session.connection().execute(
                    text("SELECT pg_notify(:channel, current_schema())"), {"channel": CHANNEL})
            session.info[_PENDING] = True

        @event.listens_for(sessions, "after_commit")
        def _publish(session: Session) -> None:
            if session.in_nested_transaction():  # a savepoint was released; the commit is to come
                return
            if session.info.pop(_PENDING, False):
                self.publish()

        @event.listens_for(sessions, "after_rollback")
        def _forget(session: Session) -> None:
            session.info.pop(_PENDING, None)


class PostgresChangeListener:
    """``LISTEN arkor_changes`` on a dedicated connection; each notification from this
    installation's schema (its payload) publishes, another schema's is ignored.

    After a lost connection it reconnects and publishes once, since notifications sent
    while it was away are gone.
    """

    def __init__(self, conninfo: str, feed: ChangeFeed) -> None:
        self._conninfo = conninfo
        self._feed = feed
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="arkor-pg-listen", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        self._ready.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    row = conn.execute("SELECT current_schema()").fetchone()
                    schema = row[0] if row else None
                    if self._ready.is_set():
                        self._feed.publish()  # we may have missed some while reconnecting
                    self._ready.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            # An empty payload: a sender from before the schema was named.
                            if note.payload in (schema, ""):
                                self._feed.publish()
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("lost the change-notification connection; reconnecting")
                self._ready.set()
                self._stop.wait(RECONNECT_SECONDS)
