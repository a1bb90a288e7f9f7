"""Users the operator manages: created (with a first token), listed, disabled; their orgs.

Used by the operator's commands (``arkor cloud users ...``, straight on the database) and by
``/v1/admin/*``; both get the same checks and the same messages.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arkor.contract.deployments import PROJECT_SLUG_RE
from arkor.contract.models import EMAIL_PATTERN, ORG_ROLES, ROLE_MEMBER, ROLE_OWNER
from arkor.store import access_tokens
from arkor.store.access_tokens import KIND_PAT, IssuedToken
from arkor.store.errors import EmailTaken, Refused
from arkor.store.tables import Membership, Org, User

FIRST_TOKEN_NAME = "first token"
ORG_SLUG_MESSAGE = (
    "org slug must be 1-64 chars, lowercase letters / digits / hyphens, starting and ending "
    "with a letter or digit"
)


@dataclass(frozen=True)
class CreatedUser:
    user: User
    token: IssuedToken
    org: Org


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_email(email: str) -> str:
    email = normalize_email(email)
    if not re.match(EMAIL_PATTERN, email) or len(email) > 320:
        raise Refused(400, f"{email!r} is not an email address (e.g. alice@example.com)")
    return email


def personal_org(session: Session, email: str) -> Org:
    """A new org for a user given none, named after their email's local part."""
    base = re.sub(r"[^a-z0-9-]+", "-", email.split("@")[0]).strip("-")[:40].strip("-") or "user"
    slug = base
    while org_by_slug(session, slug) is not None:
        slug = f"{base}-{secrets.token_hex(3)}"
    return ensure_org(session, slug)


def check_role(role: str) -> str:
    if role not in ORG_ROLES:
        raise Refused(400, f"role must be one of {', '.join(ORG_ROLES)}, not {role!r}")
    return role


def org_by_slug(session: Session, slug: str) -> Org | None:
    return session.execute(select(Org).where(Org.slug == slug)).scalar_one_or_none()


def ensure_org(session: Session, slug: str) -> Org:
    """The org ``slug``, created (named after its slug) when it does not exist yet."""
    if not PROJECT_SLUG_RE.match(slug):
        raise Refused(400, ORG_SLUG_MESSAGE)
    org = org_by_slug(session, slug)
    if org is None:
        org = Org(id=str(uuid.uuid4()), slug=slug, name=slug)
        session.add(org)
        session.flush()
    return org


def add_member(session: Session, *, user_id: str, org_id: str, role: str) -> None:
    session.add(Membership(user_id=user_id, org_id=org_id, role=check_role(role)))
    session.flush()


def user_by_email(session: Session, email: str) -> User | None:
    return session.execute(
        select(User).where(User.email == normalize_email(email))
    ).scalar_one_or_none()


def insert_user(session: Session, *, email: str | None, name: str | None,
                admin: bool = False) -> User:
    """A new signed-up (not anonymous) user; :class:`EmailTaken` when the email is used."""
    user = User(id=str(uuid.uuid4()), anonymous=False, admin=admin, disabled=False,
                email=check_email(email) if email else None, name=name)
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError as exc:
        raise EmailTaken(user.email or "") from exc
    return user


def create_user(session: Session, *, email: str, name: str | None = None, admin: bool = False,
                org_slug: str | None = None, role: str = ROLE_MEMBER) -> CreatedUser:
    """A user with their first personal access token, member of ``org_slug`` (created when
    missing) with ``role``; without one, the owner of a new personal org."""
    check_role(role)
    email = check_email(email)
    if user_by_email(session, email) is not None:
        raise EmailTaken(email)
    if org_slug:
        org = ensure_org(session, org_slug)
    else:
        org, role = personal_org(session, email), ROLE_OWNER
    user = insert_user(session, email=email, name=name, admin=admin)
    add_member(session, user_id=user.id, org_id=org.id, role=role)
    token = access_tokens.issue_token(session, user_id=user.id, kind=KIND_PAT,
                                      name=FIRST_TOKEN_NAME)
    return CreatedUser(user=user, token=token, org=org)


def list_users(session: Session, *, include_anonymous: bool = False) -> list[User]:
    query = select(User).order_by(User.created_at, User.id)
    if not include_anonymous:
        query = query.where(User.anonymous.is_(False))
    return list(session.execute(query).scalars())


def count_anonymous(session: Session) -> int:
    return int(session.execute(
        select(func.count()).select_from(User).where(User.anonymous.is_(True))
    ).scalar_one())


def disable_user(session: Session, user: User) -> None:
    """Disable ``user``: their tokens stop working on the next request (the check reads
    ``disabled``), and are revoked too, so enabling them later needs new tokens."""
    user.disabled = True
    access_tokens.revoke_all(session, user.id)
    session.flush()
