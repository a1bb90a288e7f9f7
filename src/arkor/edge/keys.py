"""How an API key is checked at the edge, and how its use is recorded.

1. ``authMode`` ``none``: anything goes, keys are ignored.
2. Otherwise the key comes from ``Authorization: Bearer <key>`` or ``x-api-key: <key>``;
   missing → 401.
3. A key without the ``ark_live_`` format or with a bad checksum is refused without looking
   further (typos, keys of other services).
4. Its SHA-256 digest must be one of the deployment's enabled keys (the cached deployment
   carries them, so no database read per request); revoked or unknown → 401.
5. The key's ``lastUsedAt`` is noted in memory and written in batches every few seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from arkor.edge.directory import ServedDeployment
from arkor.edge.openai_wire import WireError
from arkor.store.db import Database
from arkor.store.deployment_keys import is_well_formed, record_last_used
from arkor.store.secrets import digest
from arkor.store.tables import utcnow

log = logging.getLogger("arkor.edge")
FLUSH_SECONDS = 2.0


def presented_key(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = headers.get("x-api-key")
    return api_key.strip() if api_key and api_key.strip() else None


def authenticate(deployment: ServedDeployment, headers: Mapping[str, str]) -> str | None:
    """The id of the key that opens this request (None for ``authMode: none``), or 401."""
    if deployment.auth_mode == "none":
        return None
    key = presented_key(headers)
    if key is None:
        raise WireError(401, "Missing API key. Send it as `Authorization: Bearer <key>` or "
                             "`x-api-key: <key>`.", code="invalid_api_key",
                        kind="authentication_error")
    key_id = deployment.key_ids_by_digest.get(digest(key)) if is_well_formed(key) else None
    if key_id is None:
        raise WireError(401, "Invalid or revoked API key for this deployment.",
                        code="invalid_api_key", kind="authentication_error")
    return key_id


class KeyUsage:
    """``lastUsedAt`` kept in memory and flushed to the database in batches."""

    def __init__(self, db: Database, interval: float = FLUSH_SECONDS) -> None:
        self._db = db
        self._interval = interval
        self._pending: dict[str, object] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def touch(self, key_id: str) -> None:
        with self._lock:
            self._pending[key_id] = utcnow()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="arkor-key-usage", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            with self._db.session() as session:
                record_last_used(session, batch)
        except Exception:
            log.exception("could not record key usage; will retry")
            with self._lock:
                self._pending = {**batch, **self._pending}

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()
