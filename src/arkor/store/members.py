"""An org's members and their roles: who is in, added by email, removed, given a new role.

An org always keeps at least one owner. A change that could take the last one away locks the
org's row (``SELECT ... FOR UPDATE`` on PostgreSQL), makes the change, then counts the owners
and refuses (rolling back) when none is left. On SQLite the change itself holds the one write
lock until the commit. So two owners demoting each other at once cannot leave the org
without one: the second sees the first's change.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arkor.contract.models import ROLE_OWNER
from arkor.store import users
from arkor.store.errors import Refused
from arkor.store.tables import Membership, Org, User

SET_ROLE_HINT = "arkor orgs members set-role --org {org} EMAIL owner"


@dataclass(frozen=True)
class Member:
    user: User
    membership: Membership


def membership(session: Session, user_id: str, org_slug: str) -> tuple[Org, str] | None:
    """The org named ``org_slug`` and the role ``user_id`` has in it; None when the org is
    unknown or the user is not in it (the two look the same to callers)."""
    row = session.execute(
        select(Org, Membership.role)
        .join(Membership, Membership.org_id == Org.id)
        .where(Membership.user_id == user_id, Org.slug == org_slug)
    ).one_or_none()
    return None if row is None else (row[0], row[1])


def orgs_with_roles(session: Session, user_id: str) -> list[tuple[Org, str]]:
    rows = session.execute(
        select(Org, Membership.role)
        .join(Membership, Membership.org_id == Org.id)
        .where(Membership.user_id == user_id)
        .order_by(Org.created_at, Org.slug)
    ).all()
    return [(org, role) for org, role in rows]


def list_members(session: Session, org_id: str) -> list[Member]:
    rows = session.execute(
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org_id)
        .order_by(Membership.created_at, User.email, User.id)
    ).all()
    return [Member(user=user, membership=member) for user, member in rows]


def get_member(session: Session, org_id: str, user_id: str) -> Member | None:
    member = session.get(Membership, (user_id, org_id))
    if member is None:
        return None
    user = session.get(User, user_id)
    assert user is not None
    return Member(user=user, membership=member)


def add_member_by_email(session: Session, org: Org, *, email: str, role: str) -> Member:
    """Add an existing user to ``org``: 404 for an unknown email, 409 when already in it."""
    users.check_role(role)
    user = users.user_by_email(session, email)
    if user is None:
        raise Refused(404, f"No user with email {users.normalize_email(email)!r} on this "
                           "server. The operator creates one with `arkor cloud users create "
                           f"EMAIL --org {org.slug}`, or invites them with `arkor cloud "
                           f"invites create --org {org.slug}`.")
    existing = session.get(Membership, (user.id, org.id))
    if existing is not None:
        raise Refused(409, f"{user.email} is already a member of org {org.slug!r} as "
                           f"{existing.role}; change the role with `arkor orgs members "
                           f"set-role --org {org.slug} {user.email} ROLE`.")
    users.add_member(session, user_id=user.id, org_id=org.id, role=role)
    found = get_member(session, org.id, user.id)
    assert found is not None
    return found


def _lock_org(session: Session, org: Org) -> None:
    session.execute(select(Org.id).where(Org.id == org.id).with_for_update())


def _still_owned(session: Session, org: Org, member: Member) -> None:
    """Called after a change: refuse it (the caller's unit of work rolls back) when the org
    has no owner left."""
    owners = session.execute(
        select(func.count()).select_from(Membership)
        .where(Membership.org_id == org.id, Membership.role == ROLE_OWNER)
    ).scalar_one()
    if not owners:
        raise Refused(409, f"Org {org.slug!r} must keep at least one owner, and "
                           f"{member.user.email or member.user.id} is its last one. Make "
                           "another member owner first: " + SET_ROLE_HINT.format(org=org.slug))


def _member_or_404(session: Session, org: Org, user_id: str) -> Member:
    found = get_member(session, org.id, user_id)
    if found is None:
        raise Refused(404, f"User {user_id!r} is not a member of org {org.slug!r}; list them "
                           f"with `arkor orgs members list --org {org.slug}`")
    return found


def set_role(session: Session, org: Org, user_id: str, role: str) -> Member:
    """Give a member ``role``; 404 when not a member, 409 for the org's last owner."""
    users.check_role(role)
    _lock_org(session, org)
    member = _member_or_404(session, org, user_id)
    if member.membership.role != role:
        member.membership.role = role
        session.flush()
        _still_owned(session, org, member)
    return member


def remove_member(session: Session, org: Org, user_id: str) -> None:
    """Take a member out of the org; 404 when not a member, 409 for the org's last owner."""
    _lock_org(session, org)
    member = _member_or_404(session, org, user_id)
    session.delete(member.membership)
    session.flush()
    _still_owned(session, org, member)
