"""Tell caches when deployments or their keys change, at commit time.

The edge caches deployments and key digests in memory; it must never serve a revoked key,
a disabled or deleted deployment, or an old target after the change commits. Every ORM
session of a :class:`~arkor.store.db.Database` reports committed changes to deployments and
deployment keys to the feed's subscribers (in this process). Bulk ``UPDATE`` statements such
as the edge's own ``lastUsedAt`` flush do not count: they change nothing the edge caches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from arkor.store.tables import Deployment, DeploymentKey, Job

log = logging.getLogger("arkor.store")
WATCHED = (Deployment, DeploymentKey, Job)
_PENDING = "arkor_changed"


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

    def install(self, sessions: sessionmaker[Session]) -> None:
        @event.listens_for(sessions, "before_flush")
        def _collect(session: Session, _context: Any, _instances: Any) -> None:
            touched = [*session.new, *session.dirty, *session.deleted]
            if any(isinstance(obj, WATCHED) for obj in touched):
                session.info[_PENDING] = True

        @event.listens_for(sessions, "after_commit")
        def _publish(session: Session) -> None:
            if session.info.pop(_PENDING, False):
                self.publish()

        @event.listens_for(sessions, "after_rollback")
        def _forget(session: Session) -> None:
            session.info.pop(_PENDING, None)
