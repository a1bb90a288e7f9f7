"""Which deployment a slug names, what it serves, and which keys open it: cached in memory.

A hit costs a dict lookup; a miss reads the database once. Any committed change to a
deployment, a key or a job empties the cache (see :mod:`arkor.store.changes`), so a revoked
key, a disabled or deleted deployment and a new target apply from the very next request. A
generation counter stops a read that raced with a change from re-filling the cache with
what it read before the change.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from arkor.engine.base import AdapterRef
from arkor.store import jobs
from arkor.store.db import Database
from arkor.store.deployments import deployment_by_slug
from arkor.store.tables import DeploymentKey, Job


@dataclass(frozen=True)
class ServedDeployment:
    id: str
    slug: str
    enabled: bool
    auth_mode: str
    base_model: str
    adapter: AdapterRef | None
    key_ids_by_digest: Mapping[str, str] = field(default_factory=dict)


def adapter_for(job: Job, step: int | None, checkpoint_path: str | None) -> AdapterRef:
    if step is None:
        return AdapterRef(key=f"job:{job.id}:final",
                          path=Path(job.artifacts_dir or "") / "final")
    return AdapterRef(key=f"job:{job.id}:checkpoint:{step}", path=Path(checkpoint_path or ""))


class DeploymentDirectory:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, ServedDeployment | None] = {}
        self._generation = 0
        self._lock = threading.Lock()
        db.changes.subscribe(self.invalidate)

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._cache = {}

    def cached(self, slug: str) -> tuple[bool, ServedDeployment | None]:
        cache = self._cache
        if slug in cache:
            return True, cache[slug]
        return False, None

    def load(self, slug: str) -> ServedDeployment | None:
        """Read from the database (blocking) and cache the answer, negative ones included."""
        with self._lock:
            generation = self._generation
        served = self._read(slug)
        with self._lock:
            if generation == self._generation:
                self._cache[slug] = served
        return served

    def _read(self, slug: str) -> ServedDeployment | None:
        with self._db.session() as session:
            row = deployment_by_slug(session, slug)
            if row is None:
                return None
            keys = session.execute(
                select(DeploymentKey.digest, DeploymentKey.id).where(
                    DeploymentKey.deployment_id == row.id, DeploymentKey.enabled.is_(True)
                )
            ).all()
            adapter = None
            base_model = row.base_model or ""
            if row.target_kind == "adapter" and row.job_id:
                job = session.get(Job, row.job_id)
                if job is None:
                    return None
                base_model = str(job.config.get("model") or "")
                path = None
                if row.adapter_kind == "checkpoint":
                    checkpoint = jobs.get_checkpoint(session, job.id, row.checkpoint_step or 0)
                    path = checkpoint.path if checkpoint else None
                adapter = adapter_for(
                    job, row.checkpoint_step if row.adapter_kind == "checkpoint" else None, path
                )
            return ServedDeployment(
                id=row.id, slug=row.slug, enabled=row.enabled, auth_mode=row.auth_mode,
                base_model=base_model, adapter=adapter,
                key_ids_by_digest={digest: key_id for digest, key_id in keys},
            )
