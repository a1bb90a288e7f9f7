"""Who is calling: the bearer token resolves to a user, and the scope to an org (with the
caller's role there, checked against the route's row of the role matrix) and project."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from arkor.cloud import roles
from arkor.cloud.deps import DatabaseDep
from arkor.cloud.errors import ApiError
from arkor.contract.models import ROLE_VIEWER
from arkor.store import access_tokens, members, projects

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
class OrgScope:
    user_id: str
    org_id: str
    org_slug: str
    role: str


@dataclass(frozen=True)
class ProjectScope:
    user_id: str
    org_id: str
    org_slug: str
    project_id: str
    project_slug: str
    role: str


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


def require_org(session: Session, caller: Caller, org_slug: str | None,
                needs: str = ROLE_VIEWER) -> OrgScope:
    """The caller's org ``org_slug`` if their role there is at least ``needs``."""
    if not org_slug:
        raise ApiError(400, "orgSlug query parameter is required")
    found = members.membership(session, caller.user_id, org_slug)
    if found is None:
        # Unknown orgs and orgs the caller is not in look the same: nothing leaks.
        raise ApiError(403, f"You are not a member of org {org_slug!r}")
    org, role = found
    if not roles.allows(role, needs):
        raise ApiError(403, roles.refusal(needs, org.slug, role))
    return OrgScope(user_id=caller.user_id, org_id=org.id, org_slug=org.slug, role=role)


def org_scope(
    request: Request,
    db: DatabaseDep,
    caller: CallerDep,
    org_slug: Annotated[str | None, ORG_QUERY] = None,
) -> OrgScope:
    needs = roles.needed_role(request.scope.get("route"), request.method)
    with db.session() as session:
        return require_org(session, caller, org_slug, needs)


def project_scope(
    request: Request,
    db: DatabaseDep,
    caller: CallerDep,
    org_slug: Annotated[str | None, ORG_QUERY] = None,
    project_slug: Annotated[str | None, PROJECT_QUERY] = None,
) -> ProjectScope:
    if not org_slug or not project_slug:
        raise ApiError(
            400, "orgSlug and projectSlug query parameters are required (the project scope)"
        )
    needs = roles.needed_role(request.scope.get("route"), request.method)
    with db.session() as session:
        org = require_org(session, caller, org_slug, needs)
        project = projects.project_by_slug(session, org.org_id, project_slug)
        if project is None:
            raise ApiError(404, f"Project {project_slug!r} not found in org {org_slug!r}")
        return ProjectScope(
            user_id=caller.user_id,
            org_id=org.org_id,
            org_slug=org.org_slug,
            project_id=project.id,
            project_slug=project.slug,
            role=org.role,
        )


# Both scopes take the least role a route needs from the one matrix, arkor.cloud.roles.
OrgScopeDep = Annotated[OrgScope, Depends(org_scope)]
ProjectScopeDep = Annotated[ProjectScope, Depends(project_scope)]
SCOPES = (org_scope, project_scope)
