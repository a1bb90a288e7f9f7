"""Which deployment a slug names, what it serves, and which keys open it: cached in memory.

A hit costs a dict lookup; a miss reads the database once. Any committed change to a
deployment, a key or a job empties the cache (see :mod:`arkor.store.changes`), so a revoked
key, a disabled or deleted deployment and a new target apply from the very next request. A
generation counter stops a read that raced with a change from re-filling the cache with
what it read before the change.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from arkor.contract.deployments import TARGET_MODEL_MENU, is_deployment_slug
from arkor.engine.base import AdapterRef
from arkor.store.db import Database
from arkor.store.deployments import deployment_by_slug
from arkor.store.rate_limits import UNLIMITED, Limits, limits_of
from arkor.store.tables import DeploymentKey
from arkor.targets import TargetError, resolve


@dataclass(frozen=True)
class ServedDeployment:
    id: str
    slug: str
    enabled: bool
    auth_mode: str
    base_model: str
    adapter: AdapterRef | None
    key_ids_by_digest: Mapping[str, str] = field(default_factory=dict)
    project_id: str = ""
    run_retention_mode: str = "days"
    key_prefixes: Mapping[str, str] = field(default_factory=dict)  # key id -> display prefix
    expires_at: datetime | None = None
    limits: Limits = UNLIMITED
    key_limits: Mapping[str, Limits] = field(default_factory=dict)  # only keys with limits
    # A model_menu deployment's models (``base_model`` is the first, the default); empty for
    # one that serves a single model.
    menu: tuple[str, ...] = ()

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


MAX_NEGATIVE_ENTRIES = 1024
"""Unknown slugs remembered (least recently seen forgotten first), so a caller sending many
made-up names costs a bounded amount of memory."""


class DeploymentDirectory:
    def __init__(self, db: Database, *, max_negative: int = MAX_NEGATIVE_ENTRIES,
                 menu: tuple[str, ...] = ()) -> None:
        """``menu``: the operator's public base models, which model_menu deployments serve."""
        self._db = db
        self._menu = menu
        self._cache: dict[str, ServedDeployment] = {}
        self._unknown: OrderedDict[str, None] = OrderedDict()
        self._max_negative = max_negative
        self._generation = 0
        self._lock = threading.Lock()
        db.changes.subscribe(self.invalidate)

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._cache = {}
            self._unknown = OrderedDict()

    def cached(self, slug: str) -> tuple[bool, ServedDeployment | None]:
        """``(True, answer)`` when the answer is known without the database."""
        served = self._cache.get(slug)
        if served is not None:
            return True, served
        if not is_deployment_slug(slug):
            return True, None
        with self._lock:
            if slug in self._unknown:
                self._unknown.move_to_end(slug)
                return True, None
        return False, None

    def load(self, slug: str) -> ServedDeployment | None:
        """Read from the database (blocking) and cache the answer, negative ones included."""
        if not is_deployment_slug(slug):
            return None
        with self._lock:
            generation = self._generation
        served = self._read(slug)
        with self._lock:
            if generation == self._generation:
                if served is not None:
                    self._cache[slug] = served
                else:
                    self._unknown[slug] = None
                    while len(self._unknown) > self._max_negative:
                        self._unknown.popitem(last=False)
        return served

    @property
    def unknown_count(self) -> int:
        return len(self._unknown)

    def _read(self, slug: str) -> ServedDeployment | None:
        with self._db.session() as session:
            row = deployment_by_slug(session, slug)
            if row is None:
                return None
            keys = session.execute(
                select(DeploymentKey.digest, DeploymentKey.id, DeploymentKey.prefix,
                       DeploymentKey.requests_per_minute, DeploymentKey.tokens_per_minute,
                       DeploymentKey.concurrent_requests).where(
                    DeploymentKey.deployment_id == row.id, DeploymentKey.enabled.is_(True)
                )
            ).all()
            menu = self._menu if row.target_kind == TARGET_MODEL_MENU else ()
            try:
                base_model, adapter = ((menu[0], None) if menu else
                                       resolve(session, row.project_id, row))
            except TargetError:
                return None
            if row.target_kind == TARGET_MODEL_MENU and not menu:
                return None
            return ServedDeployment(
                id=row.id, slug=row.slug, enabled=row.enabled, auth_mode=row.auth_mode,
                base_model=base_model, adapter=adapter,
                key_ids_by_digest={key.digest: key.id for key in keys},
                project_id=row.project_id, run_retention_mode=row.run_retention_mode,
                expires_at=row.expires_at,
                key_prefixes={key.id: key.prefix for key in keys},
                limits=limits_of(row),
                key_limits={key.id: Limits(*key[3:]) for key in keys if Limits(*key[3:]).any},
                menu=menu,
            )
