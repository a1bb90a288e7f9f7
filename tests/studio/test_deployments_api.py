"""``/api/deployments*``: the proxy over the SDK, its checks and its error mapping."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from arkor.contract.deployments import DAYS_MODE_NEEDS_DAYS as DAYS_NEEDS_DAYS
from arkor.contract.deployments import DAYS_ONLY_WITH_DAYS_MODE as DAYS_ONLY_WITH_DAYS
from arkor.contract.deployments import SLUG_FORMAT_MESSAGE as SLUG_MESSAGE
from arkor.sdk import (
    ANON_STATE_MISMATCH_MESSAGE,
    OAUTH_MISSING_STATE_MESSAGE,
    OAuthCredentials,
    ProjectState,
    read_credentials,
    read_state,
    write_credentials,
    write_state,
)
from arkor.studio.api_deployments import NO_USABLE_STATE
from tests.studio.conftest import serve_studio, sign_in_workspace
from tests.workspace import add_job

BASE = {"kind": "base_model", "baseModel": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def create(studio, slug: str, **extra) -> dict:
    response = studio.post("/api/deployments", json={"slug": slug, "target": BASE, **extra})
    assert response.status_code == 200, response.text
    return response.json()["deployment"]


def test_list_without_state_is_scope_missing_and_calls_nothing(studio) -> None:
    response = studio.get("/api/deployments")
    assert (response.status_code, response.json()) == (
        200, {"deployments": [], "scopeMissing": True})
    assert read_credentials() is None  # no upstream call, not even a sign-in
    assert not studio.state_file.exists()


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/deployments/abc"), ("PATCH", "/api/deployments/abc"),
    ("DELETE", "/api/deployments/abc"), ("GET", "/api/deployments/abc/keys"),
    ("POST", "/api/deployments/abc/keys"), ("DELETE", "/api/deployments/abc/keys/k"),
    ("PATCH", "/api/deployments/abc/keys/k"),
])
def test_reads_and_mutations_without_state_are_404(studio, method: str, path: str) -> None:
    body = {"label": "x"} if method == "POST" else (
        ({"limits": {}} if path.endswith("/k") else {"enabled": False}) if method == "PATCH"
        else None)
    response = studio.request(method, path, json=body)
    assert (response.status_code, response.json()) == (404, {"error": NO_USABLE_STATE})
    assert not studio.state_file.exists()


def test_create_bootstraps_state_then_lists(studio, cloud) -> None:
    deployment = create(studio, "studio-bot")
    state = read_state(studio.cwd)
    assert state is not None and state.org_slug == read_credentials().org_slug
    assert state.project_slug == "my-project"
    assert deployment["slug"] == "studio-bot"
    assert deployment["authMode"] == "fixed_api_key"
    assert deployment["url"] == f"{cloud.url}/d/studio-bot/v1/chat/completions"
    assert deployment["baseUrl"] == f"{cloud.url}/d/studio-bot/v1"
    listed = studio.get("/api/deployments").json()
    assert [d["id"] for d in listed["deployments"]] == [deployment["id"]]
    assert "scopeMissing" not in listed
    got = studio.get(f"/api/deployments/{deployment['id']}").json()["deployment"]
    assert got["id"] == deployment["id"]


def test_slug_taken_is_409_with_the_upstream_message(studio) -> None:
    create(studio, "taken-slug")
    response = studio.post("/api/deployments", json={"slug": "taken-slug", "target": BASE})
    assert (response.status_code, response.json()) == (
        409, {"error": "Deployment slug is already taken"})


def test_reserved_slug_is_upstream_400(studio) -> None:
    response = studio.post("/api/deployments", json={"slug": "admin", "target": BASE})
    assert response.status_code == 400
    assert "admin" in response.json()["error"]


@pytest.mark.parametrize(("body", "message"), [
    ("{not json", "Invalid JSON body"),
    ("[]", "Invalid deployment create body: (root): Expected object"),
    (json.dumps({"slug": "A", "target": BASE}), f"Invalid deployment create body: slug: "
                                                 f"{SLUG_MESSAGE}"),
    (json.dumps({"slug": "-bad-", "target": BASE}), f"slug: {SLUG_MESSAGE}"),
    (json.dumps({"slug": "ok-slug", "target": {"kind": "adapter",
                                               "adapter": {"kind": "final"}}}),
     "target.adapter.jobId: Expected a non-empty string"),
    (json.dumps({"slug": "ok-slug", "target": {"kind": "adapter", "adapter": {
        "kind": "checkpoint", "jobId": "j", "step": -1}}}),
     "target.adapter.step: Expected an integer >= 0"),
    (json.dumps({"slug": "ok-slug", "target": BASE, "runRetentionMode": "unlimited",
                 "runRetentionDays": 3}), DAYS_ONLY_WITH_DAYS),
    (json.dumps({"slug": "ok-slug", "target": BASE, "runRetentionMode": "days"}),
     DAYS_NEEDS_DAYS),
])
def test_create_body_is_checked_before_any_call(studio, body: str, message: str) -> None:
    response = studio.post("/api/deployments", content=body,
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert response.json()["error"].startswith(("Invalid JSON body",
                                                 "Invalid deployment create body: "))
    assert read_credentials() is None and not studio.state_file.exists()


def test_create_with_retention_and_adapter_target(studio, cloud) -> None:
    ws = sign_in_workspace(cloud.url, studio.cwd)
    job_id = add_job(cloud, ws, checkpoint_steps=(5,))
    target = {"kind": "adapter", "adapter": {"kind": "checkpoint", "jobId": job_id, "step": 5}}
    response = studio.post("/api/deployments", json={
        "slug": "kept-runs", "target": target, "authMode": "none",
        "runRetentionMode": "days", "runRetentionDays": 30})
    deployment = response.json()["deployment"]
    assert (deployment["runRetentionMode"], deployment["runRetentionDays"]) == ("days", 30)
    assert deployment["target"] == target and deployment["authMode"] == "none"
    missing = studio.post("/api/deployments", json={"slug": "no-step", "target": {
        "kind": "adapter", "adapter": {"kind": "checkpoint", "jobId": job_id, "step": 6}}})
    assert missing.status_code == 404
    assert "5" in missing.json()["error"]


def test_patch_is_forwarded_verbatim(studio, cloud) -> None:
    ws = sign_in_workspace(cloud.url, studio.cwd)
    job_id = add_job(cloud, ws)
    deployment = create(studio, "patch-me")
    path = f"/api/deployments/{deployment['id']}"
    for body, message in [("{", "Invalid JSON body"),
                          ("null", "Deployment update body must be a JSON object."),
                          ("[1]", "Deployment update body must be a JSON object."),
                          ('"x"', "Deployment update body must be a JSON object.")]:
        response = studio.patch(path, content=body, headers={"Content-Type": "application/json"})
        assert (response.status_code, response.json()) == (400, {"error": message})
    disabled = studio.patch(path, json={"enabled": False}).json()["deployment"]
    assert disabled["enabled"] is False
    target = {"kind": "adapter", "adapter": {"kind": "final", "jobId": job_id}}
    retargeted = studio.patch(path, json={"target": target, "runRetentionMode": "unlimited"})
    assert retargeted.status_code == 200
    assert retargeted.json()["deployment"]["target"] == target
    assert retargeted.json()["deployment"]["runRetentionMode"] == "unlimited"
    slug = studio.patch(path, json={"slug": "new-slug"})
    assert slug.status_code == 400 and "slug" in slug.json()["error"]
    unknown = studio.patch("/api/deployments/00000000-0000-4000-8000-000000000000",
                           json={"enabled": True})
    assert unknown.status_code == 404


def test_keys_issue_list_revoke_and_delete(studio, cloud) -> None:
    deployment = create(studio, "with-keys")
    keys = f"/api/deployments/{deployment['id']}/keys"
    assert studio.get(keys).json() == {"keys": []}
    for body in [{"label": "   "}, {"label": "x" * 81}, {"label": 3}, {}]:
        response = studio.post(keys, json=body)
        assert response.status_code == 400
        assert response.json()["error"].startswith(
            "Key create body must include a non-empty `label` string (1-80 chars): ")
    issued = studio.post(keys, json={"label": "  production  "}).json()["key"]
    assert issued["label"] == "production"
    assert issued["plaintext"].startswith("ark_live_")
    assert issued["prefix"] == issued["plaintext"][:17]
    listed = studio.get(keys).json()["keys"]
    assert [(k["id"], k["enabled"], k["lastUsedAt"]) for k in listed] == [
        (issued["id"], True, None)]
    assert "plaintext" not in listed[0]
    assert studio.delete(f"{keys}/{issued['id']}").json() == {}
    assert studio.get(keys).json()["keys"][0]["enabled"] is False
    assert studio.delete(f"/api/deployments/{deployment['id']}").json() == {}
    gone = studio.get(f"/api/deployments/{deployment['id']}")
    assert gone.status_code == 404 and gone.json()["error"]


def test_a_keys_limits_are_set_through_the_sdk_and_judged_upstream(studio, cloud) -> None:
    deployment = create(studio, "key-limits")
    keys = f"/api/deployments/{deployment['id']}/keys"
    issued = studio.post(keys, json={"label": "metered"}).json()["key"]
    one = f"{keys}/{issued['id']}"
    response = studio.patch(one, json={"limits": {"requestsPerMinute": 5,
                                                  "concurrentRequests": 2}})
    assert response.status_code == 200, response.text
    assert response.json()["key"]["limits"] == {
        "requestsPerMinute": 5, "tokensPerMinute": None, "concurrentRequests": 2}
    assert "plaintext" not in response.json()["key"]
    lifted = studio.patch(one, json={"limits": {"requestsPerMinute": None}}).json()["key"]
    assert lifted["limits"] == {"requestsPerMinute": None, "tokensPerMinute": None,
                                "concurrentRequests": 2}  # a name left out is kept
    assert studio.get(keys).json()["keys"][0]["limits"] == lifted["limits"]
    for body in [{}, {"limits": 5}, {"limits": {"perDay": 1}},
                 {"limits": {"tokensPerMinute": "10"}}, {"limits": {"tokensPerMinute": True}}]:
        refused = studio.patch(one, json=body)
        assert refused.status_code == 400
        assert refused.json()["error"].startswith('Key update body must be {"limits": {...}}')
    upstream = studio.patch(one, json={"limits": {"tokensPerMinute": 0}})
    assert upstream.status_code == 400 and "tokensPerMinute" in upstream.json()["error"]
    assert studio.patch(f"{keys}/00000000-0000-4000-8000-000000000000",
                        json={"limits": {"tokensPerMinute": 9}}).status_code == 404


def test_state_of_another_org_is_scope_missing_or_409(studio, cloud) -> None:
    studio.get("/api/credentials")
    write_state(ProjectState(org_slug="someone-else", project_slug="p", project_id="x"),
                studio.cwd)
    listed = studio.get("/api/deployments")
    assert listed.json() == {"deployments": [], "scopeMissing": True}
    for method, path in [("GET", "/api/deployments/abc"), ("DELETE", "/api/deployments/abc")]:
        response = studio.request(method, path)
        assert (response.status_code, response.json()) == (
            409, {"error": ANON_STATE_MISMATCH_MESSAGE})
    response = studio.post("/api/deployments", json={"slug": "mismatch", "target": BASE})
    assert (response.status_code, response.json()) == (409, {"error": ANON_STATE_MISMATCH_MESSAGE})
    assert read_state(studio.cwd).org_slug == "someone-else"  # never overwritten


def test_an_unexpected_failure_is_a_500_in_the_one_shape(studio) -> None:
    (studio.cwd / ".arkor").write_text("a file where the state directory belongs")
    response = studio.post("/api/deployments", json={"slug": "no-state-dir", "target": BASE})
    assert (response.status_code, response.json()) == (
        500, {"error": "Studio backend unavailable"})
    assert response.headers["x-frame-options"] == "DENY"

def test_oauth_without_state_cannot_create(studio, cloud) -> None:
    write_credentials(OAuthCredentials(
        access_token="t", refresh_token="r", expires_at=0, auth0_domain="d", audience="a",
        client_id="c", arkor_cloud_api_url=cloud.url))
    response = studio.post("/api/deployments", json={"slug": "oauth-user", "target": BASE})
    assert (response.status_code, response.json()) == (400, {"error": OAUTH_MISSING_STATE_MESSAGE})
    assert not studio.state_file.exists()


def test_too_old_client_gets_the_426_upgrade_message(cloud, tmp_path: Path) -> None:
    from arkor.server import create_app
    from tests.servers import LiveServer

    settings = replace(cloud.settings, data_dir=tmp_path / "strict",
                       database_url=f"sqlite:///{tmp_path / 'strict.sqlite3'}",
                       min_client_version="99.0.0")
    with LiveServer(create_app(settings)) as strict_url:
        credentials = read_credentials() or _anon(cloud.url)
        # As if issued by the strict server (which refuses this SDK a sign-in).
        write_credentials(credentials.model_copy(update={"arkor_cloud_api_url": strict_url}))
        write_state(ProjectState(org_slug=read_credentials().org_slug, project_slug="p",
                                 project_id="x"), tmp_path)
        for studio in serve_studio(strict_url, tmp_path):
            listed = studio.get("/api/deployments")
            assert listed.status_code == 426
            assert "no longer supported" in listed.json()["error"]
            assert "pip install -U arkor" in listed.json()["error"]
            me = studio.get("/api/me")  # a raw proxy: the body as the cloud sent it
            assert me.status_code == 426
            assert me.json()["error"] == "sdk_version_unsupported"
            assert me.json()["supportedRange"] == ">=99.0.0"


def _anon(url: str):
    from tests.workspace import new_workspace

    return new_workspace(url, "strict").credentials
