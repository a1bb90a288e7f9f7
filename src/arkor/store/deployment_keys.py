"""Deployment API keys: minted here, stored as SHA-256 digests, shown in plaintext once.

Format: ``ark_live_`` + 32 base62 characters (190 random bits) + a 6-character base62 CRC32
checksum of the random part. The checksum lets the edge reject typos and garbage without a
database lookup, and lets secret scanners recognise a real key.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arkor.store.secrets import (
    CHECKSUM_CHARS,
    RANDOM_CHARS,
    digest,
    is_checksummed,
    new_checksummed,
)
from arkor.store.tables import DeploymentKey, utcnow

KEY_PREFIX = "ark_live_"
DISPLAY_PREFIX_CHARS = 17
KEY_LENGTH = len(KEY_PREFIX) + RANDOM_CHARS + CHECKSUM_CHARS


def new_key_plaintext() -> str:
    return new_checksummed(KEY_PREFIX)


def is_well_formed(plaintext: str) -> bool:
    """True if ``plaintext`` has the key format and a valid checksum."""
    return is_checksummed(plaintext, KEY_PREFIX)


def create_key(session: Session, *, deployment_id: str, label: str) -> tuple[DeploymentKey, str]:
    """Insert a new key and return it with its plaintext (the only time it exists)."""
    plaintext = new_key_plaintext()
    key = DeploymentKey(
        id=str(uuid.uuid4()),
        deployment_id=deployment_id,
        label=label,
        prefix=plaintext[:DISPLAY_PREFIX_CHARS],
        digest=digest(plaintext),
        enabled=True,
        created_at=utcnow(),
    )
    session.add(key)
    session.flush()
    return key, plaintext


def list_keys(session: Session, deployment_id: str) -> list[DeploymentKey]:
    return list(
        session.execute(
            select(DeploymentKey)
            .where(DeploymentKey.deployment_id == deployment_id)
            .order_by(DeploymentKey.created_at, DeploymentKey.id)
        ).scalars()
    )


def get_key(session: Session, deployment_id: str, key_id: str) -> DeploymentKey | None:
    return session.execute(
        select(DeploymentKey).where(
            DeploymentKey.deployment_id == deployment_id, DeploymentKey.id == key_id
        )
    ).scalar_one_or_none()


def revoke_key(session: Session, key: DeploymentKey) -> None:
    """Disable the key but keep the row (its label, prefix and history stay visible)."""
    if key.enabled:
        key.enabled = False
        key.revoked_at = utcnow()
        session.flush()


def set_limits(session: Session, key: DeploymentKey, changes: dict[str, int | None]) -> None:
    """Set the key's rate limits named in ``changes`` (None lifts one)."""
    for column, value in changes.items():
        setattr(key, column, value)
    session.flush()


def record_last_used(session: Session, last_used: dict[str, object]) -> None:
    """Apply a batch of ``{key_id: datetime}`` (the edge flushes these periodically)."""
    for key_id, when in last_used.items():
        session.execute(
            update(DeploymentKey).where(DeploymentKey.id == key_id).values(last_used_at=when)
        )
