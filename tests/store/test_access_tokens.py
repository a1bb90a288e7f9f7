"""Tokens: a checksum refuses typos without a lookup; revoked, expired and disabled users'
tokens are refused; ``last_used_at`` is written at most once a minute."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from arkor.store import access_tokens, users
from arkor.store.access_tokens import KIND_PAT, LAST_USED_RESOLUTION
from arkor.store.db import Database
from arkor.store.secrets import ACCESS_TOKEN_PREFIX, PAT_PREFIX
from arkor.store.tables import AccessToken, User, utcnow
from tests.store.conftest import Tenant


def issue(db: Database, tenant: Tenant, **kwargs: object) -> access_tokens.IssuedToken:
    with db.session() as session:
        return access_tokens.issue_token(session, user_id=tenant.user_id, kind=KIND_PAT,
                                         name="t", **kwargs)  # type: ignore[arg-type]


def test_a_mistyped_token_is_refused_by_its_checksum() -> None:
    with_checksum = "arkor_pat_" + "A" * 32
    assert not access_tokens.is_plausible(with_checksum + "AAAAAA")
    assert not access_tokens.is_plausible("Bearer nonsense")
    assert access_tokens.is_plausible(ACCESS_TOKEN_PREFIX + "legacy-token-without-checksum")


def test_revoked_expired_and_disabled_are_refused(db: Database, tenant: Tenant) -> None:
    live, doomed = issue(db, tenant), issue(db, tenant)
    expired = issue(db, tenant, expires_at=utcnow() - timedelta(seconds=1))
    assert live.plaintext.startswith(PAT_PREFIX) and access_tokens.is_plausible(live.plaintext)
    assert live.row.prefix and live.plaintext.startswith(live.row.prefix)
    with db.session() as session:
        assert access_tokens.authenticate(session, live.plaintext) is not None
        assert access_tokens.authenticate(session, expired.plaintext) is None
        access_tokens.revoke_token(session, session.get(AccessToken, doomed.row.id))
    with db.session() as session:
        assert access_tokens.authenticate(session, doomed.plaintext) is None
        listed = [t.id for t in access_tokens.list_tokens(session, tenant.user_id)]
        assert live.row.id in listed and doomed.row.id not in listed
        assert expired.row.id not in listed
        users.disable_user(session, session.get(User, tenant.user_id))
    with db.session() as session:
        assert access_tokens.authenticate(session, live.plaintext) is None


def test_last_used_is_written_at_most_once_a_minute(db: Database, tenant: Tenant) -> None:
    token = issue(db, tenant)
    with db.session() as session:
        access_tokens.authenticate(session, token.plaintext)
    with db.session() as session:
        first = session.execute(select(AccessToken.last_used_at)
                                .where(AccessToken.id == token.row.id)).scalar_one()
        access_tokens.authenticate(session, token.plaintext)
    with db.session() as session:
        row = session.get(AccessToken, token.row.id)
        assert first is not None and row.last_used_at == first
        row.last_used_at = utcnow() - LAST_USED_RESOLUTION
    with db.session() as session:
        access_tokens.authenticate(session, token.plaintext)
    with db.session() as session:
        assert session.get(AccessToken, token.row.id).last_used_at > first
