"""Anonymous identities, and the orgs a user belongs to."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from arkor.contract.models import ROLE_OWNER
from arkor.store import access_tokens
from arkor.store.tables import Membership, Org, User


@dataclass(frozen=True)
class AnonymousIdentity:
    user: User
    org: Org
    token: str


def create_anonymous_identity(session: Session, *, kind: str) -> AnonymousIdentity:
    """A new anonymous user with a personal org and a bearer token (returned once)."""
    user = User(id=str(uuid.uuid4()), anonymous=True)
    suffix = secrets.token_hex(5)
    org = Org(id=str(uuid.uuid4()), slug=f"anon-{suffix}", name=f"Anonymous {suffix}")
    session.add_all([user, org])
    session.flush()
    session.add(Membership(user_id=user.id, org_id=org.id, role=ROLE_OWNER))
    issued = access_tokens.issue_token(session, user_id=user.id, kind=kind,
                                       name=f"anonymous sign-in ({kind})")
    return AnonymousIdentity(user=user, org=org, token=issued.plaintext)


def orgs_for_user(session: Session, user_id: str) -> list[Org]:
    return list(
        session.execute(
            select(Org)
            .join(Membership, Membership.org_id == Org.id)
            .where(Membership.user_id == user_id)
            .order_by(Org.created_at, Org.slug)
        ).scalars()
    )


def member_org(session: Session, user_id: str, org_slug: str) -> Org | None:
    """The org named ``org_slug`` if ``user_id`` belongs to it; None if unknown or not a member."""
    return session.execute(
        select(Org)
        .join(Membership, Membership.org_id == Org.id)
        .where(Membership.user_id == user_id, Org.slug == org_slug)
    ).scalar_one_or_none()
