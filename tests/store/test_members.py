"""An org's members: roles read back, and an org that never loses its last owner, not even to
two owners demoting each other at the same moment."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy.exc import OperationalError

from arkor.contract.models import ROLE_MEMBER, ROLE_OWNER, ROLE_VIEWER
from arkor.store import members, users
from arkor.store.db import Database
from arkor.store.errors import Refused


def org_with_owners(db: Database, count: int) -> tuple[str, list[str]]:
    slug = f"o-{uuid.uuid4().hex[:8]}"
    ids = []
    with db.session() as session:
        for n in range(count):
            created = users.create_user(session, email=f"{n}-{slug}@example.com", org_slug=slug,
                                        role=ROLE_OWNER)
            ids.append(created.user.id)
        return slug, ids


def owners(db: Database, slug: str) -> list[str]:
    with db.session() as session:
        org = users.org_by_slug(session, slug)
        assert org is not None
        return [m.user.id for m in members.list_members(session, org.id)
                if m.membership.role == ROLE_OWNER]


def demote(db: Database, slug: str, user_id: str) -> None:
    with db.session() as session:
        org = users.org_by_slug(session, slug)
        assert org is not None
        members.set_role(session, org, user_id, ROLE_MEMBER)


def test_roles_are_read_back_per_org(db: Database) -> None:
    slug, _ = org_with_owners(db, 1)
    with db.session() as session:
        other = users.create_user(session, email=f"v-{slug}@example.com")
        org = users.org_by_slug(session, slug)
        assert org is not None
        added = members.add_member_by_email(session, org, email=other.user.email or "",
                                            role=ROLE_VIEWER)
        assert added.membership.role == ROLE_VIEWER
        found = members.membership(session, other.user.id, slug)
        assert found is not None and found[1] == ROLE_VIEWER
        assert members.membership(session, other.user.id, "no-such-org") is None
        assert {o.slug: role for o, role in members.orgs_with_roles(session, other.user.id)
                } == {slug: ROLE_VIEWER, other.org.slug: ROLE_OWNER}  # and their own org


def test_the_last_owner_stays_and_the_refusal_changes_nothing(db: Database) -> None:
    slug, [owner] = org_with_owners(db, 1)
    with pytest.raises(Refused) as refused:
        demote(db, slug, owner)
    assert refused.value.status == 409
    with pytest.raises(Refused), db.session() as session:
        org = users.org_by_slug(session, slug)
        assert org is not None
        members.remove_member(session, org, owner)
    assert owners(db, slug) == [owner]


def test_two_owners_demoting_each_other_at_once_leave_one(db: Database) -> None:
    slug, [first, second] = org_with_owners(db, 2)
    outcome: list[BaseException | None] = []
    with db.session() as session:
        org = users.org_by_slug(session, slug)
        assert org is not None
        members.set_role(session, org, first, ROLE_MEMBER)  # not committed yet

        def other() -> None:
            try:
                demote(db, slug, second)
                outcome.append(None)
            except (Refused, OperationalError) as exc:
                outcome.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=0.5)  # it waits for this unit of work
        assert thread.is_alive() or isinstance(outcome[0], OperationalError)
    thread.join(timeout=30)
    assert len(outcome) == 1 and outcome[0] is not None
    assert owners(db, slug) == [second]
