"""Identity routes: anonymous sign-up, the CLI's auth config, and who am I."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict

from arkor.cloud.auth import CallerDep
from arkor.cloud.deps import DatabaseDep
from arkor.cloud.dto import org_dto
from arkor.cloud.errors import error_responses
from arkor.contract import models as m
from arkor.store import identities
from arkor.store.tables import User

router = APIRouter(tags=["auth"])


class AnonymousBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    kind: Literal["cli", "web"] = "cli"


@router.post(
    "/v1/auth/anonymous",
    response_model=m.AnonymousSession,
    responses=error_responses(400, 426),
    summary="Create an anonymous identity with a personal org",
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


@router.get(
    "/v1/auth/cli/config",
    response_model=m.CliAuthConfig,
    responses=error_responses(426),
    summary="OAuth settings for `arkor login` (this server offers anonymous sign-in only)",
)
def cli_config() -> m.CliAuthConfig:
    return m.CliAuthConfig(auth0_domain=None, client_id=None, audience=None, callback_ports=[])


@router.get(
    "/v1/me",
    response_model=m.Me,
    responses=error_responses(401, 426),
    summary="The calling user and the orgs they belong to",
)
def me(db: DatabaseDep, caller: CallerDep) -> m.Me:
    with db.session() as session:
        user = session.get(User, caller.user_id)
        assert user is not None
        orgs = identities.orgs_for_user(session, caller.user_id)
        return m.Me(
            user=m.User(id=user.id, email=user.email, anonymous=user.anonymous),
            orgs=[org_dto(o) for o in orgs],
        )
