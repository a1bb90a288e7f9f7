"""A job's dataset may name a server path only inside ARKOR_DATASET_ROOTS, never inside the
data directory, and what is wrong with such a file is told without its content."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from arkor._version import SDK_VERSION
from arkor.server import create_app
from tests.conftest import link_cached_models
from tests.sdk.training_support import EMBEDDED, write_chat_dataset
from tests.servers import LiveServer, database_url
from tests.workspace import Workspace, new_workspace


class Caller:
    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: Workspace = new_workspace(url)
        self.params = {"orgSlug": self.ws.scope.org_slug,
                       "projectSlug": self.ws.scope.project_slug}
        self.headers = {"X-Arkor-Client": f"arkor/{SDK_VERSION}",
                        "Authorization": f"Bearer {self.ws.credentials.token}"}

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, params=self.params, headers=headers,
                             timeout=60, **kwargs)

    def create_job(self, source: dict, **config) -> httpx.Response:
        return self.request("POST", "/v1/jobs", json={"name": "probe", "config": {
            "model": EMBEDDED, "datasetSource": source, **config}})


@pytest.fixture(scope="module")
def layout(backend, tmp_path_factory) -> dict[str, Path]:
    """``base`` is the one dataset root; it holds the data directory too."""
    base = tmp_path_factory.mktemp(f"roots-{backend}")
    shared = base / "shared"
    shared.mkdir()
    write_chat_dataset(shared / "good.jsonl")
    secret_row = {"messages": [{"role": "TOP-SECRET-ROLE", "content": "hunter2"},
                               {"role": "assistant", "content": "ok"}]}
    (shared / "bad.jsonl").write_text(f"{json.dumps(secret_row)}\nroot:x:0:0:hunter2\n")
    (shared / "passwd-link.jsonl").symlink_to("/etc/passwd")
    return {"base": base, "shared": shared, "data": base / "data"}


@pytest.fixture(scope="module")
def rooted(cloud, layout, backend, request) -> Iterator[Caller]:
    """A server whose dataset root contains its own data directory."""
    layout["data"].mkdir()
    link_cached_models(layout["data"], request.config)
    with database_url(backend, layout["data"]) as url:
        settings = replace(cloud.settings, data_dir=layout["data"], database_url=url,
                           dataset_roots=(layout["base"],))
        with LiveServer(create_app(settings)) as server_url:
            yield Caller(server_url)


def refusal(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    for leaked in ("hunter2", "root:x", "TOP-SECRET", "/bin/"):
        assert leaked not in error, error
    return error


def test_server_paths_are_refused_unless_the_operator_allows_roots(cloud) -> None:
    caller = Caller(cloud.url)
    for source in ({"type": "local", "path": "/etc/passwd"},
                   {"type": "local", "path": "/no/such/file.jsonl"},
                   {"type": "huggingface", "name": "/etc"}):
        error = refusal(caller.create_job(source))
        assert "ARKOR_DATASET_ROOTS" in error and '"type": "upload"' in error, error
    eval_probe = caller.create_job({"type": "local", "path": "/no/such/file.jsonl"},
                                   evalDatasetSource={"type": "local", "path": "/etc/passwd"})
    assert "ARKOR_DATASET_ROOTS" in refusal(eval_probe)
    assert caller.request("GET", "/v1/jobs").json()["jobs"] == []


def test_probes_outside_a_root_all_get_the_same_answer(rooted, layout) -> None:
    upload = rooted.request("POST", "/v1/datasets",
                            content=(layout["shared"] / "good.jsonl").read_bytes(),
                            headers={"content-type": "application/octet-stream"})
    assert upload.status_code == 201, upload.text
    uploaded = next((layout["data"] / "datasets").rglob("*.jsonl"))
    probes = [
        {"type": "local", "path": "/etc/passwd"},
        {"type": "local", "path": str(layout["shared"] / ".." / ".." / ".." / "etc" / "passwd")},
        {"type": "local", "path": str(layout["shared"] / "passwd-link.jsonl")},
        {"type": "local", "path": str(uploaded)},
        {"type": "local", "path": str(layout["shared"] / ".." / "data" / uploaded.relative_to(
            layout["data"]))},
        {"type": "local", "path": "/no/such/file.jsonl"},
        {"type": "huggingface", "name": str(layout["data"])},
        {"type": "huggingface", "name": str(layout["shared"]), "subset": "../../../etc"},
    ]
    errors = {refusal(rooted.create_job(source)) for source in probes}
    assert len(errors) == 1, errors
    assert "ARKOR_DATASET_ROOTS" in errors.pop()
    assert rooted.request("GET", "/v1/jobs").json()["jobs"] == []


def test_problems_in_an_allowed_file_are_told_without_its_content(rooted, layout) -> None:
    error = refusal(rooted.create_job({"type": "local", "path": str(layout["shared"] /
                                                                    "bad.jsonl")}))
    assert "lines 1, 2" in error and "not shown" in error
    missing = refusal(rooted.create_job({"type": "local", "path": str(layout["shared"] /
                                                                      "missing.jsonl")}))
    assert "not a valid chat dataset" in missing


def test_a_file_inside_a_root_trains(rooted, layout) -> None:
    response = rooted.create_job({"type": "local", "path": str(layout["shared"] / "good.jsonl")},
                                 maxSteps=200, batchSize=2, maxLength=64)
    assert response.status_code == 201, response.text
    job_id = response.json()["job"]["id"]
    deadline = time.monotonic() + 60
    status = "queued"
    while status == "queued" and time.monotonic() < deadline:
        time.sleep(0.2)
        status = rooted.request("GET", f"/v1/jobs/{job_id}").json()["job"]["status"]
    assert status == "running"  # the supervisor's own check let it start
    assert rooted.request("POST", f"/v1/jobs/{job_id}/cancel").status_code == 200
