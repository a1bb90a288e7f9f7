"""Invites: one use, and a refused acceptance leaves no user behind."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from arkor.store import invites, users
from arkor.store.db import Database
from arkor.store.errors import EmailTaken, Refused
from arkor.store.tables import Invite, User


def count_users(db: Database) -> int:
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(User)).scalar_one())


def test_an_invite_is_spent_once_and_refusals_create_nothing(db: Database) -> None:
    with db.session() as session:
        users.create_user(session, email="owner@example.com", org_slug="guild", role="owner")
        created = invites.create_invite(session, org_slug="guild", role="viewer")
    with db.session() as session:
        row = session.get(Invite, created.invite.id)
        assert row is not None and created.code not in {str(v) for v in vars(row).values()}
    before = count_users(db)
    with pytest.raises(EmailTaken), db.session() as session:
        invites.accept_invite(session, created.code, email="owner@example.com")
    assert count_users(db) == before  # the user insert was rolled back with the refusal
    with db.session() as session:
        accepted = invites.accept_invite(session, created.code, name="Guest")
        assert accepted.role == "viewer" and accepted.org.slug == "guild"
    with pytest.raises(Refused, match="already used"), db.session() as session:
        invites.accept_invite(session, created.code)
    assert count_users(db) == before + 1
