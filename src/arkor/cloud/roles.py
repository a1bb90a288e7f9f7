"""The role matrix: the least org role each org- or project-scoped route needs, in one table.

``owner`` > ``member`` > ``viewer``. A viewer reads (projects, deployments and their key
labels, jobs with their metrics, datasets' names and counts); a member also creates, changes
and deletes them, mints keys and chats through ``/v1/inference/chat`` (prompts and answers);
an owner also manages the org's members. The scope dependencies in :mod:`arkor.cloud.auth`
read this table for the route being served, and :func:`check_matrix` refuses to build an app
with a scoped route that has no entry (or an entry without a route). docs/api.md shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from arkor.contract.domains import DOMAIN_ROUTE, DOMAIN_VERIFY_ROUTE, DOMAINS_ROUTE
from arkor.contract.models import ROLE_MEMBER, ROLE_OWNER, ROLE_VIEWER, OrgRole

RANK: Final[dict[str, int]] = {ROLE_VIEWER: 0, ROLE_MEMBER: 1, ROLE_OWNER: 2}

ROUTE_ROLES: Final[dict[tuple[str, str], OrgRole]] = {
    ("GET", "/v1/projects"): ROLE_VIEWER,
    ("POST", "/v1/projects"): ROLE_MEMBER,
    ("GET", "/v1/members"): ROLE_VIEWER,
    ("POST", "/v1/members"): ROLE_OWNER,
    ("PATCH", "/v1/members/{user_id}"): ROLE_OWNER,
    ("DELETE", "/v1/members/{user_id}"): ROLE_OWNER,
    ("GET", "/v1/endpoints"): ROLE_VIEWER,
    ("POST", "/v1/endpoints"): ROLE_MEMBER,
    ("GET", "/v1/endpoints/{deployment_id}"): ROLE_VIEWER,
    ("PATCH", "/v1/endpoints/{deployment_id}"): ROLE_MEMBER,
    ("DELETE", "/v1/endpoints/{deployment_id}"): ROLE_MEMBER,
    ("GET", "/v1/endpoints/{deployment_id}/keys"): ROLE_VIEWER,
    ("POST", "/v1/endpoints/{deployment_id}/keys"): ROLE_MEMBER,
    ("PATCH", "/v1/endpoints/{deployment_id}/keys/{key_id}"): ROLE_MEMBER,
    ("DELETE", "/v1/endpoints/{deployment_id}/keys/{key_id}"): ROLE_MEMBER,
    ("GET", DOMAINS_ROUTE): ROLE_VIEWER,
    ("POST", DOMAINS_ROUTE): ROLE_MEMBER,
    ("POST", DOMAIN_VERIFY_ROUTE): ROLE_MEMBER,
    ("DELETE", DOMAIN_ROUTE): ROLE_MEMBER,
    ("GET", "/v1/endpoints/{deployment_id}/usage"): ROLE_VIEWER,
    ("GET", "/v1/usage"): ROLE_VIEWER,
    # Runs hold prompts and answers: members only.
    ("GET", "/v1/endpoints/{deployment_id}/runs"): ROLE_MEMBER,
    ("DELETE", "/v1/endpoints/{deployment_id}/runs"): ROLE_MEMBER,
    ("GET", "/v1/endpoints/{deployment_id}/runs/export"): ROLE_MEMBER,
    ("GET", "/v1/endpoints/{deployment_id}/runs/{run_id}"): ROLE_MEMBER,
    ("PATCH", "/v1/endpoints/{deployment_id}/runs/{run_id}"): ROLE_MEMBER,
    ("DELETE", "/v1/endpoints/{deployment_id}/runs/{run_id}"): ROLE_MEMBER,
    ("GET", "/v1/datasets"): ROLE_VIEWER,
    ("POST", "/v1/datasets"): ROLE_MEMBER,
    ("DELETE", "/v1/datasets/{dataset_id}"): ROLE_MEMBER,
    ("GET", "/v1/jobs"): ROLE_VIEWER,
    ("POST", "/v1/jobs"): ROLE_MEMBER,
    ("GET", "/v1/jobs/{job_id}"): ROLE_VIEWER,
    ("POST", "/v1/jobs/{job_id}/cancel"): ROLE_MEMBER,
    ("GET", "/v1/jobs/{job_id}/events/stream"): ROLE_VIEWER,
    ("POST", "/v1/jobs/import"): ROLE_MEMBER,
    ("POST", "/v1/inference/chat"): ROLE_MEMBER,
}


def allows(role: str, needed: str) -> bool:
    return RANK.get(role, -1) >= RANK[needed]


def refusal(needed: str, org_slug: str, role: str) -> str:
    return (f"This needs the {needed} role in org {org_slug!r}; you are a {role}. Ask one of "
            f"its owners for the role (`arkor orgs members list --org {org_slug}` shows who).")


def needed_role(route: object, method: str) -> OrgRole:
    path = route.path if isinstance(route, APIRoute) else None
    try:
        return ROUTE_ROLES[(method, path or "")]
    except KeyError:
        raise RuntimeError(f"{method} {path} is scoped but has no entry in "
                           "arkor.cloud.roles.ROUTE_ROLES") from None


def _calls(dependant: Dependant) -> Iterable[Callable[..., Any] | None]:
    yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def scoped_operations(routes: Iterable[object],
                      scopes: tuple[Callable[..., Any], ...]) -> set[tuple[str, str]]:
    """(method, path) of every route that depends on one of the ``scopes`` dependencies."""
    found = set()
    for route in routes:
        if isinstance(route, APIRoute) and any(c in scopes for c in _calls(route.dependant)):
            found |= {(method, route.path) for method in route.methods or ()}
    return found


def check_matrix(routes: Iterable[object], scopes: tuple[Callable[..., Any], ...]) -> None:
    """Refuse an app whose scoped routes and the matrix disagree, naming what to add."""
    scoped = scoped_operations(routes, scopes)
    missing = sorted(scoped - ROUTE_ROLES.keys())
    stale = sorted(ROUTE_ROLES.keys() - scoped)
    if missing or stale:
        raise RuntimeError(
            "arkor.cloud.roles.ROUTE_ROLES must name every org- or project-scoped route: "
            f"missing {missing}, without a scoped route {stale}")
