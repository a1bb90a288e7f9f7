"""Sign-in and project bootstrap: anonymous credentials and ``.arkor/state.json`` on demand.

Credentials that exist (the file, or ``ARKOR_TOKEN``) are always used as they are: a new
anonymous identity is made only when there are none, never over a signed-in user's.
A project is set up in the org of the credentials (a token without one recorded, as
``ARKOR_TOKEN``, takes its first org from ``GET /v1/me``, as ``arkor login --token`` does).
A role that may not create projects (viewer) adopts the project named for the directory
when it exists; otherwise the refusal says which projects it could use instead.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from arkor.contract.models import AnonymousSession, Me, Project
from arkor.sdk._client import AsyncCloudApiClient, CloudApiClient
from arkor.sdk._credentials import (
    AnonymousCredentials,
    AnyCredentials,
    credentials_file_is_corrupt,
    credentials_path,
    default_arkor_cloud_api_url,
    read_credentials,
    warn_replacing_corrupt,
    write_credentials,
)
from arkor.sdk._errors import ConflictError, CredentialsError, PermissionDeniedError
from arkor.sdk._state import ProjectState, check_bootstrap, project_slug_for, write_state

Creds = AnyCredentials

NO_ORG_MESSAGE = (
    "Your user is in no org on {url}, so there is nowhere to set up a project for this "
    "directory. Ask an owner of an org to add you (`arkor orgs members add EMAIL --org ORG`)."
)
PROJECT_REFUSED_MESSAGE = (
    "This directory has no project yet, and creating one ({slug!r} in org {org!r}) was "
    "refused: {refusal} {instead}"
)
USE_EXISTING = ("To use one of the org's projects instead ({projects}), write "
                ".arkor/state.json here with its orgSlug, projectSlug and projectId.")
NO_EXISTING = "The org has no project you could use instead yet."


def _anonymous_credentials(session: AnonymousSession, base_url: str) -> AnonymousCredentials:
    return AnonymousCredentials(
        token=session.token,
        anonymous_id=session.anonymous_id,
        arkor_cloud_api_url=base_url,
        org_slug=session.personal_org.slug,
    )


def _save(session: AnonymousSession, base_url: str, path: Path) -> AnonymousCredentials:
    if credentials_file_is_corrupt(path):
        warn_replacing_corrupt(path)
    credentials = _anonymous_credentials(session, base_url)
    write_credentials(credentials, path)
    return credentials


def ensure_credentials(
    *,
    base_url: str | None = None,
    path: Path | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Creds:
    """``ARKOR_TOKEN`` or the credentials on file, or a new anonymous identity written to the
    file when there are none."""
    existing = read_credentials(path)  # ARKOR_TOKEN first, unless a path is given
    if existing is not None:
        return existing
    url = base_url if base_url is not None else default_arkor_cloud_api_url()
    with CloudApiClient(base_url=url, transport=transport) as client:
        session = client.create_anonymous_session(kind="cli")
    return _save(session, url, path or credentials_path())


async def aensure_credentials(
    *,
    base_url: str | None = None,
    path: Path | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Creds:
    existing = read_credentials(path)
    if existing is not None:
        return existing
    url = base_url if base_url is not None else default_arkor_cloud_api_url()
    async with AsyncCloudApiClient(base_url=url, transport=transport) as client:
        session = await client.create_anonymous_session(kind="cli")
    return _save(session, url, path or credentials_path())


def default_org(me: Me, base_url: str) -> str:
    """The org a token without a recorded one sets projects up in: its first, the one
    ``arkor login --token`` records."""
    if not me.orgs:
        raise CredentialsError(NO_ORG_MESSAGE.format(url=base_url))
    return me.orgs[0].slug


def _pick(projects: list[Project], slug: str, org_slug: str, error: ConflictError |
          PermissionDeniedError) -> Project:
    """The project ``slug`` when it exists: a 409 lost to a concurrent create, or a role that
    may not create projects. Else the 409 as is, or the 403 saying what to use instead."""
    for project in projects:
        if project.slug == slug:
            return project
    if isinstance(error, ConflictError):
        raise error
    names = ", ".join(p.slug for p in projects)
    instead = USE_EXISTING.format(projects=names) if names else NO_EXISTING
    raise PermissionDeniedError(403, PROJECT_REFUSED_MESSAGE.format(
        slug=slug, org=org_slug, refusal=error.message, instead=instead)) from error


def _record(project: Project, org_slug: str, cwd: Path | None) -> ProjectState:
    state = ProjectState(org_slug=org_slug, project_slug=project.slug, project_id=project.id)
    write_state(state, cwd)
    return state


def ensure_project_state(
    client: CloudApiClient, credentials: Creds, cwd: Path | None = None
) -> ProjectState:
    """Usable state as is; without one (anonymous, or a token), create the project for this
    directory in the credentials' org, or adopt it when the slug exists (after a 409, or a
    403 for a viewer), and write ``.arkor/state.json``."""
    found = check_bootstrap(credentials, cwd)
    if isinstance(found, ProjectState):
        return found
    org_slug = found or default_org(client.get_me(), client.base_url)
    name, slug = project_slug_for(cwd or Path.cwd())
    try:
        project = client.create_project(org_slug, name=name, slug=slug)
    except (ConflictError, PermissionDeniedError) as exc:
        project = _pick(client.list_projects(org_slug).projects, slug, org_slug, exc)
    return _record(project, org_slug, cwd)


async def aensure_project_state(
    client: AsyncCloudApiClient, credentials: Creds, cwd: Path | None = None
) -> ProjectState:
    found = check_bootstrap(credentials, cwd)
    if isinstance(found, ProjectState):
        return found
    org_slug = found or default_org(await client.get_me(), client.base_url)
    name, slug = project_slug_for(cwd or Path.cwd())
    try:
        project = await client.create_project(org_slug, name=name, slug=slug)
    except (ConflictError, PermissionDeniedError) as exc:
        project = _pick((await client.list_projects(org_slug)).projects, slug, org_slug, exc)
    return _record(project, org_slug, cwd)
