"""``.arkor/state.json``: which org and project this working directory is scoped to.

Read paths ignore a missing, corrupt or unusable state file. Write paths (create a
deployment, start training, run inference) bootstrap one for anonymous users and token
users with :func:`ensure_project_state`, and fail with a message that says what to do
otherwise.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from arkor.sdk._credentials import AnonymousCredentials, AnyCredentials, OAuthCredentials
from arkor.sdk._errors import ConflictError, CredentialsError
from arkor.sdk._files import write_private_file

ANON_STATE_MISMATCH_MESSAGE = (
    "This workspace's .arkor/state.json is scoped to a different organization than your "
    "current anonymous session. Delete .arkor/state.json to start a fresh anonymous project, "
    "or run `arkor login` with the account that owns that project."
)
OAUTH_MISSING_STATE_MESSAGE = (
    "No .arkor/state.json found. Create it by hand with { orgSlug, projectSlug, projectId } "
    "pointing at the project you want to use."
)


@dataclass(frozen=True)
class ProjectState:
    org_slug: str
    project_slug: str
    project_id: str

    def to_wire(self) -> dict[str, str]:
        return {
            "orgSlug": self.org_slug,
            "projectSlug": self.project_slug,
            "projectId": self.project_id,
        }


def state_path(cwd: Path | None = None) -> Path:
    return (cwd or Path.cwd()) / ".arkor" / "state.json"


def read_state(cwd: Path | None = None) -> ProjectState | None:
    try:
        raw = json.loads(state_path(cwd).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    values = [raw.get(k) for k in ("orgSlug", "projectSlug", "projectId")]
    if not all(isinstance(v, str) for v in values):
        return None
    return ProjectState(*values)  # type: ignore[arg-type]


def write_state(state: ProjectState, cwd: Path | None = None) -> Path:
    path = state_path(cwd)
    write_private_file(path, json.dumps(state.to_wire(), indent=2) + "\n")
    return path


def is_state_usable(
    state: ProjectState, credentials: AnyCredentials
) -> bool:
    """An anonymous session can only use state scoped to its own personal org."""
    return not (
        isinstance(credentials, AnonymousCredentials) and state.org_slug != credentials.org_slug
    )


def usable_state(
    credentials: AnyCredentials, cwd: Path | None = None
) -> ProjectState | None:
    state = read_state(cwd)
    return state if state is not None and is_state_usable(state, credentials) else None


def project_slug_for(cwd: Path) -> tuple[str, str]:
    """``(name, slug)`` for the project an anonymous session creates for ``cwd``."""
    name = next((p for p in reversed(cwd.parts) if p.strip("/")), "project")
    slug = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:40].strip("-")
    return name, slug or "project"


def check_bootstrap(credentials: AnyCredentials, cwd: Path | None) -> ProjectState | str | None:
    """The usable state, or the org slug to bootstrap one in (an anonymous session's, or a
    token's org from sign-in), or ``None`` for a token with no org recorded (``ARKOR_TOKEN``):
    the caller asks the server which orgs it is in. OAuth without state raises."""
    state = read_state(cwd)
    if state is not None:
        if is_state_usable(state, credentials):
            return state
        raise ConflictError(409, ANON_STATE_MISMATCH_MESSAGE)
    if isinstance(credentials, OAuthCredentials):
        raise CredentialsError(OAUTH_MISSING_STATE_MESSAGE)
    return credentials.org_slug
