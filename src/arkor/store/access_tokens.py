"""Bearer tokens: issued, listed and revoked by their owner, checked on every request.

A token is valid while it is not revoked, not past ``expires_at`` and its user is not
disabled. The check reads the database each time (no cache of valid tokens), so a revocation
or an expiry applies on the very next request, on every server process. ``last_used_at`` is
written at most once per :data:`LAST_USED_RESOLUTION`, so a busy token costs few writes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from arkor.store.secrets import (
    ACCESS_TOKEN_PREFIX,
    PAT_PREFIX,
    digest,
    display_prefix,
    is_checksummed,
    new_access_token,
    new_checksummed,
)
from arkor.store.tables import AccessToken, User, utcnow

KIND_PAT = "pat"
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class IssuedToken:
    row: AccessToken
    plaintext: str


def is_plausible(plaintext: str) -> bool:
    """Whether ``plaintext`` could be a token at all: a personal access token must carry a
    valid checksum; an anonymous sign-in's token (older ones have none) its prefix."""
    if plaintext.startswith(PAT_PREFIX):
        return is_checksummed(plaintext, PAT_PREFIX)
    return plaintext.startswith(ACCESS_TOKEN_PREFIX) and len(plaintext) <= 100


def issue_token(session: Session, *, user_id: str, kind: str, name: str,
                expires_at: datetime | None = None) -> IssuedToken:
    """Insert a token and return it with its plaintext (the only time it exists)."""
    if kind == KIND_PAT:
        plaintext, prefix = new_checksummed(PAT_PREFIX), PAT_PREFIX
    else:
        plaintext, prefix = new_access_token(), ACCESS_TOKEN_PREFIX
    row = AccessToken(
        id=str(uuid.uuid4()), user_id=user_id, digest=digest(plaintext), kind=kind, name=name,
        prefix=display_prefix(plaintext, prefix), created_at=utcnow(), expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return IssuedToken(row, plaintext)


def authenticate(session: Session, plaintext: str) -> tuple[User, AccessToken] | None:
    """The user and token ``plaintext`` stands for, if it is valid now; else None."""
    if not is_plausible(plaintext):
        return None
    now = utcnow()
    found = session.execute(
        select(User, AccessToken)
        .join(AccessToken, AccessToken.user_id == User.id)
        .where(
            AccessToken.digest == digest(plaintext),
            AccessToken.revoked_at.is_(None),
            or_(AccessToken.expires_at.is_(None), AccessToken.expires_at > now),
            User.disabled.is_(False),
        )
    ).one_or_none()
    if found is None:
        return None
    user, token = found[0], found[1]
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now
    return user, token


def list_tokens(session: Session, user_id: str) -> list[AccessToken]:
    """The user's tokens that still work (revoked and expired ones are left out)."""
    now = utcnow()
    return list(session.execute(
        select(AccessToken)
        .where(AccessToken.user_id == user_id, AccessToken.revoked_at.is_(None),
               or_(AccessToken.expires_at.is_(None), AccessToken.expires_at > now))
        .order_by(AccessToken.created_at, AccessToken.id)
    ).scalars())


def get_token(session: Session, user_id: str, token_id: str) -> AccessToken | None:
    """The user's token ``token_id``; None for another user's, so nothing leaks."""
    return session.execute(
        select(AccessToken).where(AccessToken.user_id == user_id, AccessToken.id == token_id,
                                  AccessToken.revoked_at.is_(None))
    ).scalar_one_or_none()


def revoke_token(session: Session, token: AccessToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()


def revoke_all(session: Session, user_id: str) -> None:
    for token in list_tokens(session, user_id):
        revoke_token(session, token)
