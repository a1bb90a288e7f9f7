"""Sign-in and project bootstrap: anonymous credentials and ``.arkor/state.json`` on demand."""

from __future__ import annotations

from pathlib import Path

import httpx

from arkor.contract.models import AnonymousSession, Project
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
from arkor.sdk._errors import ConflictError
from arkor.sdk._state import ProjectState, check_bootstrap, project_slug_for, write_state

Creds = AnyCredentials


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
    """The credentials on file, or a new anonymous identity written to the file."""
    path = path or credentials_path()
    existing = read_credentials(path)
    if existing is not None:
        return existing
    url = base_url if base_url is not None else default_arkor_cloud_api_url()
    with CloudApiClient(base_url=url, transport=transport) as client:
        session = client.create_anonymous_session(kind="cli")
    return _save(session, url, path)


async def aensure_credentials(
    *,
    base_url: str | None = None,
    path: Path | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Creds:
    path = path or credentials_path()
    existing = read_credentials(path)
    if existing is not None:
        return existing
    url = base_url if base_url is not None else default_arkor_cloud_api_url()
    async with AsyncCloudApiClient(base_url=url, transport=transport) as client:
        session = await client.create_anonymous_session(kind="cli")
    return _save(session, url, path)


def _pick(projects: list[Project], slug: str, error: ConflictError) -> Project:
    for project in projects:
        if project.slug == slug:
            return project
    raise error


def _record(project: Project, org_slug: str, cwd: Path | None) -> ProjectState:
    state = ProjectState(org_slug=org_slug, project_slug=project.slug, project_id=project.id)
    write_state(state, cwd)
    return state


def ensure_project_state(
    client: CloudApiClient, credentials: Creds, cwd: Path | None = None
) -> ProjectState:
    """Usable state as is; for an anonymous session without one, create the project for
    this directory (or adopt it when the slug exists) and write ``.arkor/state.json``."""
    found = check_bootstrap(credentials, cwd)
    if isinstance(found, ProjectState):
        return found
    org_slug = found
    name, slug = project_slug_for(cwd or Path.cwd())
    try:
        project = client.create_project(org_slug, name=name, slug=slug)
    except ConflictError as exc:
        project = _pick(client.list_projects(org_slug).projects, slug, exc)
    return _record(project, org_slug, cwd)


async def aensure_project_state(
    client: AsyncCloudApiClient, credentials: Creds, cwd: Path | None = None
) -> ProjectState:
    found = check_bootstrap(credentials, cwd)
    if isinstance(found, ProjectState):
        return found
    org_slug = found
    name, slug = project_slug_for(cwd or Path.cwd())
    try:
        project = await client.create_project(org_slug, name=name, slug=slug)
    except ConflictError as exc:
        project = _pick((await client.list_projects(org_slug)).projects, slug, exc)
    return _record(project, org_slug, cwd)
