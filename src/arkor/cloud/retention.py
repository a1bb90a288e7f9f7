"""The retention sweep, every ``SWEEP_SECONDS``: each deployment's runs older than its
``runRetentionDays`` (all of them once it is ``disabled``) are deleted in batches, and so are
deployments past their ``expiresAt`` (with their keys and runs; the slug is held for the
project for ``ARKOR_SLUG_GRACE_DAYS``, as for a deployment deleted by hand).

Retention is read from the deployments at each sweep, so a shortened one applies at the next.
With several servers on one PostgreSQL, a session advisory lock lets one of them sweep at a
time (the others skip that round); SQLite has one server.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from arkor.store import deployments, runs
from arkor.store.db import Database
from arkor.store.tables import utcnow

log = logging.getLogger("arkor.runs")
SWEEP_SECONDS = 300.0
LOCK_KEY = 0x61726B6F72  # "arkor": the advisory lock of the run sweep


class RunSweeper:
    def __init__(self, db: Database, *, interval: float = SWEEP_SECONDS,
                 grace: timedelta = timedelta(0)) -> None:
        self.db = db
        self.interval = interval
        self.grace = grace
        self.expired_deleted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="arkor-run-sweep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def sweep(self, now: datetime | None = None) -> int | None:
        """Delete what retention no longer keeps; the runs deleted, or None when another
        server holds the sweep."""
        now = now or utcnow()
        with self.db.turn(LOCK_KEY) as mine:
            if not mine:
                return None
            with self.db.session() as session:
                targets = runs.retention_targets(session)
            deleted = 0
            for deployment_id, days in targets:
                cutoff = now - timedelta(days=days)
                while not self._stop.is_set():
                    with self.db.session() as session:
                        batch = runs.delete_older(session, deployment_id, cutoff)
                    deleted += batch
                    if batch < runs.SWEEP_BATCH:
                        break
            if deleted:
                log.info("run retention: deleted %d runs", deleted)
            self._delete_expired(now)
            return deleted

    def _delete_expired(self, now: datetime) -> None:
        while not self._stop.is_set():
            with self.db.session() as session:
                batch = deployments.expired_deployments(session, now)
                for row in batch:
                    log.info("deployment %s expired at %s: deleted", row.slug, row.expires_at)
                    deployments.delete_deployment(session, row, grace=self.grace)
            self.expired_deleted += len(batch)
            if len(batch) < 100:
                return

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception:
                log.exception("run retention sweep failed")
