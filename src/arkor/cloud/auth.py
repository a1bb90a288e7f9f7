"""Who is calling: the bearer token resolves to a user, and the scope to an org and project."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from arkor.cloud.deps import DatabaseDep
from arkor.cloud.errors import ApiError
from arkor.store import access_tokens, identities, projects

_bearer = HTTPBearer(auto_error=False, description=(
    "Token from `arkor login` (anonymous sign-in, an invite, or a personal access token)"))

ORG_QUERY = Query(alias="orgSlug", description="Slug of the org")
PROJECT_QUERY = Query(alias="projectSlug", description="Slug of the project inside the org")


@dataclass(frozen=True)
class Caller:
    user_id: str
    anonymous: bool
    token_id: str
    admin: bool = False


@dataclass(frozen=True)
class ProjectScope:
    user_id: str
    org_id: str
    org_slug: str
    project_id: str
    project_slug: str


def current_caller(
    db: DatabaseDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or not credentials.credentials:
        raise ApiError(
            401,
            "Missing bearer token. Run `arkor login --anonymous` to create credentials.",
        )
    with db.session() as session:
        found = access_tokens.authenticate(session, credentials.credentials)
        if found is None:
            raise ApiError(401, "Invalid, expired or revoked token. Run `arkor login` to sign "
                                "in again.")
        user, token = found
        return Caller(user_id=user.id, anonymous=user.anonymous, token_id=token.id,
                      admin=user.admin)


CallerDep = Annotated[Caller, Depends(current_caller)]


def admin_caller(caller: CallerDep) -> Caller:
    if not caller.admin:
        raise ApiError(403, "Only the server's admins may use /v1/admin. The operator makes "
                            "one with `arkor cloud users create EMAIL --admin`.")
    return caller


AdminDep = Annotated[Caller, Depends(admin_caller)]


def require_org(session: Session, caller: Caller, org_slug: str | None) -> tuple[str, str]:
    if not org_slug:
        raise ApiError(400, "orgSlug query parameter is required")
    org = identities.member_org(session, caller.user_id, org_slug)
    if org is None:
        # Unknown orgs and orgs the caller is not in look the same: nothing leaks.
        raise ApiError(403, f"You are not a member of org {org_slug!r}")
    return org.id, org.slug


def org_scope(
    db: DatabaseDep,
    caller: CallerDep,
    org_slug: Annotated[str | None, ORG_QUERY] = None,
) -> tuple[str, str]:
    with db.session() as session:
        return require_org(session, caller, org_slug)


def project_scope(
    db: DatabaseDep,
    caller: CallerDep,
    org_slug: Annotated[str | None, ORG_QUERY] = None,
    project_slug: Annotated[str | None, PROJECT_QUERY] = None,
) -> ProjectScope:
    if not org_slug or not project_slug:
        raise ApiError(
            400, "orgSlug and projectSlug query parameters are required (the project scope)"
        )
    with db.session() as session:
        org_id, _ = require_org(session, caller, org_slug)
        project = projects.project_by_slug(session, org_id, project_slug)
        if project is None:
            raise ApiError(404, f"Project {project_slug!r} not found in org {org_slug!r}")
        return ProjectScope(
            user_id=caller.user_id,
            org_id=org_id,
            org_slug=org_slug,
            project_id=project.id,
            project_slug=project.slug,
        )


OrgScopeDep = Annotated[tuple[str, str], Depends(org_scope)]
ProjectScopeDep = Annotated[ProjectScope, Depends(project_scope)]
