"""Users, their orgs, memberships and access tokens."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from arkor.store.secrets import digest, new_access_token
from arkor.store.tables import AccessToken, Membership, Org, User


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
    token = new_access_token()
    session.add_all([user, org])
    session.flush()
    session.add_all(
        [
            Membership(user_id=user.id, org_id=org.id, role="owner"),
            AccessToken(id=str(uuid.uuid4()), user_id=user.id, digest=digest(token), kind=kind),
        ]
    )
    session.flush()
    return AnonymousIdentity(user=user, org=org, token=token)


def user_for_token(session: Session, token: str) -> User | None:
    row = session.execute(
        select(User).join(AccessToken, AccessToken.user_id == User.id).where(
            AccessToken.digest == digest(token)
        )
    ).scalar_one_or_none()
    return row


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
