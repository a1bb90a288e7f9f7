"""JSON bodies the control plane refuses before any route sees them: too deep to handle, or
holding a lone UTF-16 surrogate (which psycopg cannot encode). Each is a 400 that names the
field, on SQLite and PostgreSQL, and nothing is stored."""

from __future__ import annotations

import json

import httpx
import pytest

from arkor.json_input import MAX_JSON_DEPTH, TOO_DEEP
from arkor.training.demo import demo_dataset_path
from tests.cloud.test_endpoints_errors import EMBEDDED, base_target, call, error_of, headers
from tests.workspace import Workspace, new_workspace

DEEP_BODIES = {
    "array": b"[" * 100_000 + b"]" * 100_000,
    "object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
}


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def post_raw(cloud, ws: Workspace, path: str, body: bytes) -> httpx.Response:
    return call(cloud, ws, "POST", path, content=body, timeout=60,
                headers={"content-type": "application/json"})


@pytest.fixture(scope="module")
def ws(cloud) -> Workspace:
    return new_workspace(cloud.url, "guarded")


@pytest.fixture(scope="module")
def job_config(cloud, ws) -> dict:
    """A config the jobs route accepts, so only the guard can refuse it."""
    dataset = httpx.post(
        f"{cloud.url}/v1/datasets", content=demo_dataset_path().read_bytes(),
        params={"orgSlug": ws.scope.org_slug, "projectSlug": ws.scope.project_slug,
                "name": "triage.jsonl"},
        headers={**headers(ws), "content-type": "application/octet-stream"}).json()["dataset"]
    return {"model": EMBEDDED, "datasetSource": {"type": "upload", "uploadId": dataset["id"]},
            "maxSteps": 1, "dryRun": True}


@pytest.mark.parametrize("shape", DEEP_BODIES)
@pytest.mark.parametrize("path", ["/v1/projects", "/v1/endpoints", "/v1/jobs",
                                  "/v1/inference/chat"])
def test_a_body_nested_100k_deep_is_400(cloud, ws, path, shape) -> None:
    assert error_of(post_raw(cloud, ws, path, DEEP_BODIES[shape]), 400) == TOO_DEEP


def test_a_body_deeper_than_the_limit_is_400_and_nothing_is_stored(cloud, ws,
                                                                   job_config) -> None:
    jobs_before = ws.client.list_jobs(ws.scope)
    body = {"name": "deep", "config": {**job_config, "note": nested(100)}}
    assert error_of(call(cloud, ws, "POST", "/v1/jobs", json=body), 400) == TOO_DEEP
    assert ws.client.list_jobs(ws.scope) == jobs_before
    # The limit is the whole body's depth: {"notes": [...]} adds one level.
    at_limit = {"slug": "at-limit", "target": base_target(), "notes": nested(MAX_JSON_DEPTH - 1)}
    assert call(cloud, ws, "POST", "/v1/endpoints", json=at_limit).status_code == 201
    over = {**at_limit, "slug": "over-limit", "notes": nested(MAX_JSON_DEPTH)}
    assert error_of(call(cloud, ws, "POST", "/v1/endpoints", json=over), 400) == TOO_DEEP


def with_surrogate(body: dict, escaped: str = "\\ud800") -> bytes:
    """``body`` as JSON with each ``@`` replaced by a lone surrogate escape."""
    return json.dumps(body).replace("@", escaped).encode()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/jobs", {"name": "j", "config": {"note": "x@"}}, "config.note"),
        ("/v1/jobs", {"name": "j", "config": {"tags": ["ok", "@"]}}, "config.tags[1]"),
        ("/v1/jobs", {"name": "j@", "config": {}}, "name"),
        ("/v1/endpoints", {"slug": "sur-name", "name": "bot @", "target": base_target()},
         "name"),
        ("/v1/endpoints", {"slug": "sur@", "target": base_target()}, "slug"),
        ("/v1/endpoints", {"slug": "sur-target", "target": base_target("@")},
         "target.baseModel"),
        ("/v1/projects", {"name": "p@", "slug": "sur-project"}, "name"),
    ],
)
def test_a_lone_surrogate_is_400_naming_the_field(cloud, ws, job_config, path, body,
                                                  field) -> None:
    if path == "/v1/jobs":
        body = {**body, "config": {**job_config, **body["config"]}}
    jobs_before = ws.client.list_jobs(ws.scope)
    endpoints_before = ws.client.list_deployments(ws.scope)
    message = error_of(post_raw(cloud, ws, path, with_surrogate(body)), 400)
    assert message.startswith(f"{field} is not valid Unicode"), message
    assert "\\ud800" in message
    assert ws.client.list_jobs(ws.scope) == jobs_before
    assert ws.client.list_deployments(ws.scope) == endpoints_before


def test_a_lone_surrogate_in_a_key_or_as_raw_bytes_is_400(cloud, ws, job_config) -> None:
    key = with_surrogate({"name": "j", "config": {**job_config, "k@": 1}})
    assert "A key in config" in error_of(post_raw(cloud, ws, "/v1/jobs", key), 400)
    raw = json.dumps({"name": "j", "config": {**job_config, "note": "@"}}).encode()
    message = error_of(post_raw(cloud, ws, "/v1/jobs", raw.replace(b"@", b"\xed\xa0\x80")),
                       400)
    assert message.startswith("config.note is not valid Unicode")
