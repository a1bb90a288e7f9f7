"""Identity routes: sign-up (anonymous, or with an invite), the CLI's auth config, who am I."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict

from arkor.cloud import quotas, signup
from arkor.cloud.auth import CallerDep
from arkor.cloud.deps import DatabaseDep, SettingsDep
from arkor.cloud.dto import created_token_dto, org_dto, role_dto, user_dto
from arkor.cloud.errors import error_responses
from arkor.contract import models as m
from arkor.store import identities, invites, members
from arkor.store.tables import User

router = APIRouter(tags=["auth"])


class AnonymousBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    kind: Literal["cli", "web"] = "cli"


@router.post(
    "/v1/auth/anonymous",
    response_model=m.AnonymousSession,
    responses=error_responses(400, 403, 426, 429),
    dependencies=signup.AnonymousSignup,
    summary="Create an anonymous identity with a personal org (when ARKOR_SIGNUP=anonymous)",
)
def create_anonymous(
    db: DatabaseDep,
    body: Annotated[AnonymousBody | None, Body()] = None,
) -> m.AnonymousSession:
    kind = body.kind if body else "cli"
    with db.session() as session:
        identity = identities.create_anonymous_identity(session, kind=kind)
        return m.AnonymousSession(
            token=identity.token,
            anonymous_id=identity.user.id,
            kind=kind,
            personal_org=org_dto(identity.org),
        )


@router.post(
    "/v1/auth/invite",
    status_code=201,
    response_model=m.InviteSession,
    responses=error_responses(400, 403, 409, 426, 429),
    dependencies=signup.InviteSignup,
    summary="Accept an invite code: a new user in the invite's org, and their first token",
)
def accept_invite(db: DatabaseDep, body: m.AcceptInviteBody) -> m.InviteSession:
    with db.session() as session:
        accepted = invites.accept_invite(session, body.code, email=body.email, name=body.name)
        return m.InviteSession(
            token=created_token_dto(accepted.token.row, accepted.token.plaintext),
            user=user_dto(accepted.user), org=org_dto(accepted.org),
            role=role_dto(accepted.role),
        )


@router.get(
    "/v1/auth/cli/config",
    response_model=m.CliAuthConfig,
    responses=error_responses(426),
    summary="How `arkor login` may sign in here: the sign-up policy (no OAuth on this server)",
)
def cli_config(settings: SettingsDep) -> m.CliAuthConfig:
    return m.CliAuthConfig(auth0_domain=None, client_id=None, audience=None, callback_ports=[],
                           signup=signup.policy(settings))


@router.get(
    "/v1/me",
    response_model=m.Me,
    responses=error_responses(401, 426),
    summary="The calling user, the orgs they belong to with their role and usage in each, and "
            "the server's quotas per org",
)
def me(db: DatabaseDep, caller: CallerDep, settings: SettingsDep) -> m.Me:
    with db.session() as session:
        user = session.get(User, caller.user_id)
        assert user is not None
        orgs = members.orgs_with_roles(session, caller.user_id)
        return m.Me(user=user_dto(user), quotas=quotas.quotas(settings), orgs=[
            m.MemberOrg(id=o.id, slug=o.slug, name=o.name, role=role_dto(role),
                        usage=quotas.usage(session, o.id))
            for o, role in orgs])
