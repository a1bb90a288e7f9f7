"""Invites: a one-time code that makes a new user a member of an org with a role.

The code (``arkor_inv_`` + 190 random bits + a checksum) is shown once; only its digest is
kept. Accepting it spends it with one conditional ``UPDATE`` (still unused, not expired), so
two people racing with the same code cannot both get in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arkor.store import access_tokens, users
from arkor.store.access_tokens import KIND_PAT, IssuedToken
from arkor.store.errors import Refused
from arkor.store.secrets import INVITE_PREFIX, digest, is_checksummed, new_checksummed
from arkor.store.tables import Invite, Org, User, utcnow

DEFAULT_INVITE_DAYS = 7
INVITE_TOKEN_NAME = "invite sign-in"
INVALID_INVITE = (
    "This invite code is not valid: it is mistyped, expired or already used. Ask the "
    "server's operator for a new one (`arkor cloud invites create --org ORG`)."
)


@dataclass(frozen=True)
class CreatedInvite:
    invite: Invite
    org: Org
    code: str


@dataclass(frozen=True)
class AcceptedInvite:
    user: User
    org: Org
    role: str
    token: IssuedToken


def create_invite(session: Session, *, org_slug: str, role: str,
                  days: int = DEFAULT_INVITE_DAYS) -> CreatedInvite:
    """An invite into ``org_slug`` (which must exist) with ``role``, valid for ``days``."""
    users.check_role(role)
    if days < 1:
        raise Refused(400, "An invite must be valid for at least 1 day")
    org = users.org_by_slug(session, org_slug)
    if org is None:
        raise Refused(404, f"Org {org_slug!r} does not exist. Create it with `arkor cloud "
                      f"users create EMAIL --org {org_slug} --role owner` first.")
    code = new_checksummed(INVITE_PREFIX)
    now = utcnow()
    invite = Invite(id=str(uuid.uuid4()), org_id=org.id, role=role, digest=digest(code),
                    created_at=now, expires_at=now + timedelta(days=days))
    session.add(invite)
    session.flush()
    return CreatedInvite(invite=invite, org=org, code=code)


def accept_invite(session: Session, code: str, *, email: str | None = None,
                  name: str | None = None) -> AcceptedInvite:
    """Spend ``code``: a new user, member of the invite's org with its role, and a token."""
    if not is_checksummed(code.strip(), INVITE_PREFIX):
        raise Refused(403, INVALID_INVITE)
    now = utcnow()
    invite = session.execute(
        select(Invite).where(Invite.digest == digest(code.strip()))
    ).scalar_one_or_none()
    if invite is None or invite.used_at is not None or invite.expires_at <= now:
        raise Refused(403, INVALID_INVITE)
    user = users.insert_user(session, email=email, name=name)
    spent = session.execute(
        update(Invite)
        .where(Invite.id == invite.id, Invite.used_at.is_(None), Invite.expires_at > now)
        .values(used_at=now, used_by=user.id)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        raise Refused(403, INVALID_INVITE)
    org = session.get(Org, invite.org_id)
    assert org is not None
    users.add_member(session, user_id=user.id, org_id=org.id, role=invite.role)
    token = access_tokens.issue_token(session, user_id=user.id, kind=KIND_PAT,
                                      name=INVITE_TOKEN_NAME)
    return AcceptedInvite(user=user, org=org, role=invite.role, token=token)
