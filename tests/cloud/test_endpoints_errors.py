"""Every 400/401/403/404/409/426 of the deployments API, with the single error shape."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from arkor._version import SDK_VERSION
from tests.workspace import Workspace, add_job, new_workspace

CLIENT = {"X-Arkor-Client": f"arkor/{SDK_VERSION}"}
EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"


def headers(ws: Workspace) -> dict[str, str]:
    return {**CLIENT, "Authorization": f"Bearer {ws.credentials.token}"}


def call(cloud, ws: Workspace, method: str, path: str, **kwargs) -> httpx.Response:
    kwargs.setdefault(
        "params", {"orgSlug": ws.scope.org_slug, "projectSlug": ws.scope.project_slug}
    )
    kwargs["headers"] = {**headers(ws), **kwargs.get("headers", {})}
    return httpx.request(method, cloud.url + path, **kwargs)


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    return body["error"]


def base_target(name: str = EMBEDDED) -> dict:
    return {"kind": "base_model", "baseModel": name}


@pytest.fixture
def ws(cloud) -> Workspace:
    return new_workspace(cloud.url)


@pytest.mark.parametrize(
    "slug",
    ["a", "A-bot", "-bot", "bot-", "my_bot", "x" * 51, "bot.", "", "ünï"],
)
def test_bad_slugs_are_400_with_the_rule(cloud, ws, slug) -> None:
    response = call(cloud, ws, "POST", "/v1/endpoints",
                    json={"slug": slug, "target": base_target(), "authMode": "none"})
    assert "2-50 chars" in error_of(response, 400)


@pytest.mark.parametrize("slug", ["www", "api", "admin", "app", "edge", "studio", "docs",
                                  "status", "mail"])
def test_reserved_slugs_are_400(cloud, ws, slug) -> None:
    response = call(cloud, ws, "POST", "/v1/endpoints",
                    json={"slug": slug, "target": base_target()})
    assert "reserved" in error_of(response, 400)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"runRetentionMode": "days"}, 'requires a positive integer runRetentionDays'),
        ({"runRetentionMode": "unlimited", "runRetentionDays": 3}, "only valid when"),
        ({"runRetentionDays": 3}, "only valid when"),
        ({"runRetentionMode": "days", "runRetentionDays": 0}, "runRetentionDays"),
        ({"runRetentionMode": "weekly"}, "runRetentionMode"),
    ],
)
def test_retention_coupling(cloud, ws, body, needle) -> None:
    response = call(cloud, ws, "POST", "/v1/endpoints",
                    json={"slug": "keep-runs", "target": base_target(), **body})
    assert needle in error_of(response, 400)


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ({"kind": "adapter"}, "adapter"),
        ({"kind": "adapter", "adapter": {"kind": "checkpoint", "jobId": "x"}}, "step"),
        ({"kind": "adapter", "adapter": {"kind": "newest", "jobId": "x"}}, "kind"),
        ({"kind": "lora"}, "kind"),
        ({"kind": "base_model"}, "baseModel"),
        ("final", "target"),
        ({"kind": "adapter", "adapter": {"kind": "checkpoint", "jobId": "x", "step": "20"}},
         "step"),
    ],
)
def test_malformed_targets_are_400(cloud, ws, target, needle) -> None:
    response = call(cloud, ws, "POST", "/v1/endpoints", json={"slug": "bot-x", "target": target})
    assert needle in error_of(response, 400)


def test_targets_that_do_not_exist(cloud, ws) -> None:
    running = add_job(cloud, ws, status="running", checkpoint_steps=(5,))
    done = add_job(cloud, ws, checkpoint_steps=(10,))
    unknown = "00000000-0000-4000-8000-000000000010"

    def create(target: dict) -> httpx.Response:
        return call(cloud, ws, "POST", "/v1/endpoints", json={"slug": "tgt", "target": target})

    msg = error_of(create({"kind": "adapter", "adapter": {"kind": "final", "jobId": unknown}}), 404)
    assert unknown in msg
    msg = error_of(create({"kind": "adapter", "adapter": {"kind": "final", "jobId": running}}), 400)
    assert "running" in msg and "completed" in msg
    msg = error_of(
        create({"kind": "adapter", "adapter": {"kind": "checkpoint", "jobId": done, "step": 11}}),
        404,
    )
    assert "step 11" in msg and "10" in msg
    msg = error_of(create(base_target("meta-llama/Llama-2-7b-hf")), 400)
    assert "meta-llama/Llama-2-7b-hf" in msg and EMBEDDED in msg
    # A running job's existing checkpoint is a valid target.
    ok = create({"kind": "adapter", "adapter": {"kind": "checkpoint", "jobId": running, "step": 5}})
    assert ok.status_code == 201, ok.text


def test_job_from_another_project_is_404(cloud, ws) -> None:
    other = new_workspace(cloud.url, project_slug="other")
    foreign_job = add_job(cloud, other)
    response = call(cloud, ws, "POST", "/v1/endpoints", json={
        "slug": "steal", "target": {"kind": "adapter", "adapter": {"kind": "final",
                                                                   "jobId": foreign_job}},
    })
    error_of(response, 404)


def test_slug_taken_is_409_across_orgs(cloud, ws) -> None:
    body = {"slug": f"taken-{ws.scope.org_slug[-6:]}", "target": base_target()}
    assert call(cloud, ws, "POST", "/v1/endpoints", json=body).status_code == 201
    assert error_of(call(cloud, ws, "POST", "/v1/endpoints", json=body), 409) == (
        "Deployment slug is already taken"
    )
    other = new_workspace(cloud.url, project_slug="elsewhere")
    error_of(call(cloud, other, "POST", "/v1/endpoints", json=body), 409)


def test_concurrent_creates_of_one_slug_give_exactly_one_201(cloud, ws) -> None:
    body = {"slug": f"race-{ws.scope.org_slug[-6:]}", "target": base_target()}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(
            lambda _: call(cloud, ws, "POST", "/v1/endpoints", json=body).status_code, range(8)
        ))
    assert sorted(statuses) == [201] + [409] * 7
    listed = call(cloud, ws, "GET", "/v1/endpoints").json()["deployments"]
    assert [d["slug"] for d in listed] == [body["slug"]]


def test_patch_rules(cloud, ws) -> None:
    created = call(cloud, ws, "POST", "/v1/endpoints",
                   json={"slug": f"patch-{ws.scope.org_slug[-6:]}", "target": base_target()})
    dep = created.json()["deployment"]
    path = f"/v1/endpoints/{dep['id']}"
    assert "immutable" in error_of(call(cloud, ws, "PATCH", path, json={"slug": "new-name"}), 400)
    assert "enabled" in error_of(call(cloud, ws, "PATCH", path, json={"enabled": "no"}), 400)
    assert "enabled" in error_of(call(cloud, ws, "PATCH", path, json={"enabled": None}), 400)
    assert "authMode" in error_of(call(cloud, ws, "PATCH", path, json={"authMode": "oauth"}), 400)
    assert "only valid" in error_of(
        call(cloud, ws, "PATCH", path, json={"runRetentionMode": "disabled",
                                             "runRetentionDays": 4}), 400
    )
    unchanged = call(cloud, ws, "PATCH", path, json={"unknownExtra": 1})
    assert unchanged.status_code == 200 and unchanged.json()["deployment"] == dep
    toggled = call(cloud, ws, "PATCH", path, json={"authMode": "none", "enabled": False})
    assert toggled.json()["deployment"]["authMode"] == "none"
    assert toggled.json()["deployment"]["enabled"] is False


def test_keys_errors(cloud, ws) -> None:
    dep = call(cloud, ws, "POST", "/v1/endpoints",
               json={"slug": f"keys-{ws.scope.org_slug[-6:]}", "target": base_target()}
               ).json()["deployment"]
    keys = f"/v1/endpoints/{dep['id']}/keys"
    for label in ["", "   ", "x" * 81]:
        assert "1-80" in error_of(call(cloud, ws, "POST", keys, json={"label": label}), 400)
    assert "label" in error_of(call(cloud, ws, "POST", keys, json={}), 400)
    created = call(cloud, ws, "POST", keys, json={"label": "  ci  "})
    assert created.status_code == 201 and created.json()["key"]["label"] == "ci"
    error_of(call(cloud, ws, "DELETE", f"{keys}/00000000-0000-4000-8000-000000000099"), 404)
    key_id = created.json()["key"]["id"]
    assert call(cloud, ws, "DELETE", f"{keys}/{key_id}").status_code == 204
    assert call(cloud, ws, "DELETE", f"{keys}/{key_id}").status_code == 204  # idempotent
    error_of(call(cloud, ws, "GET", "/v1/endpoints/nope/keys"), 404)


def test_scoping(cloud, ws) -> None:
    mine = call(cloud, ws, "POST", "/v1/endpoints",
                json={"slug": f"scoped-{ws.scope.org_slug[-6:]}", "target": base_target()}
                ).json()["deployment"]
    stranger = new_workspace(cloud.url, project_slug="stranger")

    # Not a member of the org: 403, whether or not it exists.
    for org in (ws.scope.org_slug, "no-such-org"):
        response = call(cloud, stranger, "GET", "/v1/endpoints",
                        params={"orgSlug": org, "projectSlug": ws.scope.project_slug})
        assert "not a member" in error_of(response, 403)
    error_of(call(cloud, stranger, "GET", "/v1/projects", params={"orgSlug": ws.scope.org_slug}),
             403)
    # Another project's deployment id from my own scope: 404, never its data.
    response = call(cloud, stranger, "GET", f"/v1/endpoints/{mine['id']}")
    assert mine["slug"] not in error_of(response, 404)
    for method in ("PATCH", "DELETE"):
        error_of(call(cloud, stranger, method, f"/v1/endpoints/{mine['id']}", json={}), 404)
    # Unknown project in my org, and missing scope.
    error_of(call(cloud, ws, "GET", "/v1/endpoints",
                  params={"orgSlug": ws.scope.org_slug, "projectSlug": "nope"}), 404)
    assert "orgSlug" in error_of(call(cloud, ws, "GET", "/v1/endpoints", params={}), 400)


def test_authentication(cloud, ws) -> None:
    response = httpx.get(cloud.url + "/v1/me", headers=CLIENT)
    assert "arkor login" in error_of(response, 401)
    response = httpx.get(cloud.url + "/v1/me",
                         headers={**CLIENT, "Authorization": "Bearer arkor_at_forged"})
    error_of(response, 401)
    response = httpx.get(cloud.url + "/v1/me", headers=headers(ws))
    assert response.status_code == 200
    assert response.json()["orgs"][0]["slug"] == ws.scope.org_slug


@pytest.mark.parametrize(
    ("header", "reason", "current"),
    [(None, "missing", "unknown"), ("curl/8.0", "malformed", "unknown"),
     ("arkor/", "malformed", "unknown"), ("arkor/0.0.9", None, "0.0.9")],
)
def test_client_version_gate(cloud, ws, header, reason, current) -> None:
    h = {"Authorization": f"Bearer {ws.credentials.token}"}
    if header is not None:
        h["X-Arkor-Client"] = header
    for method, path in [("GET", "/v1/me"), ("POST", "/v1/auth/anonymous"),
                         ("GET", "/v1/endpoints")]:
        response = httpx.request(method, cloud.url + path, headers=h)
        assert response.status_code == 426
        body = response.json()
        assert body["error"] == "sdk_version_unsupported"
        assert body["currentVersion"] == current
        assert body["supportedRange"] == ">=0.1.0"
        assert "upgrade" in body
        assert body.get("reason") == reason
    # Even a body that is not JSON gets the upgrade answer first.
    response = httpx.post(cloud.url + "/v1/endpoints", content=b"{nope",
                          headers={**h, "content-type": "application/json"})
    assert response.status_code == 426


def test_invalid_json_and_unknown_routes(cloud, ws) -> None:
    response = call(cloud, ws, "POST", "/v1/endpoints", content=b"{not json",
                    headers={**headers(ws), "content-type": "application/json"})
    assert "not valid JSON" in error_of(response, 400)
    error_of(httpx.get(cloud.url + "/v1/nothing-here", headers=headers(ws)), 404)
    error_of(call(cloud, ws, "PUT", "/v1/endpoints"), 405)


def test_projects(cloud, ws) -> None:
    org = {"orgSlug": ws.scope.org_slug}
    response = call(cloud, ws, "POST", "/v1/projects", params=org,
                    json={"name": "Demo again", "slug": ws.scope.project_slug})
    assert "already taken" in error_of(response, 409)
    assert "slug" in error_of(call(cloud, ws, "POST", "/v1/projects", params=org,
                                   json={"name": "x", "slug": "Bad Slug"}), 400)
    listed = call(cloud, ws, "GET", "/v1/projects", params=org).json()
    assert listed["org"]["slug"] == ws.scope.org_slug
    assert [p["slug"] for p in listed["projects"]] == [ws.scope.project_slug]
