"""What a command needs to call the cloud: credentials, a client, and a project scope."""

from __future__ import annotations

from dataclasses import dataclass

from arkor.cli.output import fail
from arkor.sdk import (
    AnyCredentials,
    CloudApiClient,
    ProjectScope,
    default_arkor_cloud_api_url,
    ensure_credentials,
    ensure_project_state,
    read_credentials,
    usable_state,
)

NOT_SIGNED_IN = "Not signed in. Run `arkor login` or `arkor login --anonymous`."
NO_SCOPE = (
    "No project scope for this directory: no usable .arkor/state.json. Pass --org and "
    "--project, or run `arkor endpoints create ...` here first to set one up."
)


@dataclass
class CloudSession:
    client: CloudApiClient
    credentials: AnyCredentials

    def close(self) -> None:
        self.client.close()


def open_session(*, bootstrap: bool = False) -> CloudSession:
    """Credentials on file; with ``bootstrap`` (write paths) mint anonymous ones if none."""
    credentials = read_credentials()
    if credentials is None:
        if not bootstrap:
            fail(NOT_SIGNED_IN)
        credentials = ensure_credentials()
    client = CloudApiClient(
        base_url=default_arkor_cloud_api_url(credentials), credentials=credentials
    )
    return CloudSession(client=client, credentials=credentials)


def resolve_scope(
    session: CloudSession, org: str | None, project: str | None, *, bootstrap: bool = False
) -> ProjectScope:
    if org or project:
        if not (org and project):
            fail("Pass both --org and --project (or neither, to use .arkor/state.json).")
        return ProjectScope(org_slug=org, project_slug=project)
    state = usable_state(session.credentials)
    if state is None and bootstrap:
        state = ensure_project_state(session.client, session.credentials)
    if state is None:
        fail(NO_SCOPE)
    return ProjectScope(org_slug=state.org_slug, project_slug=state.project_slug)
