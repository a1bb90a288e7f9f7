"""Deployment API keys: minted here, stored as SHA-256 digests, shown in plaintext once.

Format: ``ark_live_`` + 32 base62 characters (190 random bits) + a 6-character base62 CRC32
checksum of the random part. The checksum lets the edge reject typos and garbage without a
database lookup, and lets secret scanners recognise a real key.
"""

from __future__ import annotations

import secrets
import uuid
import zlib

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arkor.store.secrets import digest
from arkor.store.tables import DeploymentKey, utcnow

KEY_PREFIX = "ark_live_"
RANDOM_CHARS = 32
CHECKSUM_CHARS = 6
DISPLAY_PREFIX_CHARS = 17
KEY_LENGTH = len(KEY_PREFIX) + RANDOM_CHARS + CHECKSUM_CHARS

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "".join(reversed(chars))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_CHARS)


def new_key_plaintext() -> str:
    random_part = "".join(secrets.choice(_BASE62) for _ in range(RANDOM_CHARS))
    return KEY_PREFIX + random_part + _checksum(random_part)


def is_well_formed(plaintext: str) -> bool:
    """True if ``plaintext`` has the key format and a valid checksum."""
    if len(plaintext) != KEY_LENGTH or not plaintext.startswith(KEY_PREFIX):
        return False
    body = plaintext[len(KEY_PREFIX) :]
    random_part, checksum = body[:RANDOM_CHARS], body[RANDOM_CHARS:]
    if any(c not in _BASE62 for c in body):
        return False
    return secrets.compare_digest(_checksum(random_part), checksum)


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


def record_last_used(session: Session, last_used: dict[str, object]) -> None:
    """Apply a batch of ``{key_id: datetime}`` (the edge flushes these periodically)."""
    for key_id, when in last_used.items():
        session.execute(
            update(DeploymentKey).where(DeploymentKey.id == key_id).values(last_used_at=when)
        )
