"""A real Studio server (uvicorn on a free port) in front of the real control plane."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from arkor.sdk import ProjectState, write_credentials, write_state
from arkor.studio import StudioConfig, create_studio_app
from tests.servers import LiveServer
from tests.workspace import Workspace, new_workspace


class Studio:
    def __init__(self, url: str, token: str, cwd: Path) -> None:
        self.url = url
        self.token = token
        self.cwd = cwd
        self.http = httpx.Client(base_url=url, timeout=60)

    def request(self, method: str, path: str, *, token: str | None = "", **kwargs: Any
                ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["X-Arkor-Studio-Token"] = token or self.token
        return self.http.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    @property
    def state_file(self) -> Path:
        return self.cwd / ".arkor" / "state.json"


def serve_studio(cloud_url: str, cwd: Path) -> Iterator[Studio]:
    config = StudioConfig(cwd=cwd, cloud_url=cloud_url)
    with LiveServer(create_studio_app(config)) as url:
        studio = Studio(url, config.token, cwd)
        yield studio
        studio.http.close()


@pytest.fixture
def studio(cloud: Any) -> Iterator[Studio]:
    """A Studio whose working directory is the test's own (empty) project directory."""
    yield from serve_studio(cloud.url, Path.cwd())


def sign_in_workspace(cloud_url: str, cwd: Path, project_slug: str = "demo") -> Workspace:
    """Credentials on file and ``.arkor/state.json`` for a new project, as after a first run."""
    ws = new_workspace(cloud_url, project_slug)
    write_credentials(ws.credentials)
    write_state(ProjectState(org_slug=ws.scope.org_slug, project_slug=ws.scope.project_slug,
                             project_id=ws.project_id), cwd)
    return ws
