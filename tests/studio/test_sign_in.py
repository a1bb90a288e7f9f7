"""The Studio signed in with a token of a real user, not only anonymously: `arkor login
--token` and ARKOR_TOKEN, a viewer's refusals, a control plane that signs nobody up
anonymously, and a token that stopped working. Users are made by the operator's own
command (`arkor cloud users create`), against a real control plane and a real Studio."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import update

from arkor.cloud.roles import refusal
from arkor.contract.models import (
    ROLE_MEMBER,
    ROLE_OWNER,
    ROLE_VIEWER,
    SIGNUP_DISABLED,
    SIGNUP_INVITE,
)
from arkor.sdk import (
    CloudApiClient,
    ProjectScope,
    ProjectState,
    TokenCredentials,
    credentials_path,
    read_credentials,
    read_state,
    write_state,
)
from arkor.server import create_app
from arkor.store import users
from arkor.store.tables import AccessToken, utcnow
from arkor.studio.sign_in import (
    ENV_TOKEN_REFUSED,
    FILE_TOKEN_REFUSED,
    NO_SIGN_UP,
    SIGN_UP_BY_INVITE,
)
from tests.cli.conftest import cli_runner
from tests.servers import LiveServer
from tests.studio.conftest import Studio, serve_studio
from tests.workspace import add_job

BASE = {"kind": "base_model", "baseModel": "HuggingFaceTB/SmolLM2-135M-Instruct"}
LINE = json.dumps({"messages": [{"role": "user", "content": "hi"},
                                {"role": "assistant", "content": "hello"}]})


@pytest.fixture
def arkor(cloud: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The CLI: a user's (`arkor login`) and the operator's (`arkor cloud users`, on the
    server's database)."""
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", cloud.url)
    monkeypatch.setenv("ARKOR_DATABASE_URL", cloud.settings.db_url)
    monkeypatch.setenv("ARKOR_DATA_DIR", str(cloud.settings.data_dir))
    return cli_runner()


def new_user(arkor: Any, email: str, *options: str) -> str:
    """`arkor cloud users create`: the user's first token, printed once."""
    return str(arkor("cloud", "users", "create", email, *options).stdout.strip().splitlines()[-1])


def login(arkor: Any, token: str) -> TokenCredentials:
    arkor("login", "--force", "--token", token)
    saved = read_credentials()
    assert isinstance(saved, TokenCredentials) and saved.token == token
    return saved


def shared_project(cloud: Any, owner_token: str, org: str, slug: str) -> tuple[Any, str]:
    """A project the org's owner made, with one deployment: (project, deployment id)."""
    client = CloudApiClient(base_url=cloud.url, token=owner_token)
    project = client.create_project(org, name=slug, slug=slug)
    deployment = client.create_deployment(ProjectScope(org_slug=org, project_slug=slug),
                                          slug=f"{slug}-bot", target=BASE)
    return project, deployment.id


def token_id(cloud: Any, token: str) -> str:
    client = CloudApiClient(base_url=cloud.url, token=token)
    return next(t.id for t in client.list_access_tokens() if t.current)


def test_a_member_signed_in_with_arkor_login_token_works_in_their_org(
        studio: Studio, cloud: Any, arkor: Any) -> None:
    token = new_user(arkor, "ann@example.com", "--org", "team", "--role", ROLE_MEMBER)
    saved = login(arkor, token)
    file_before = credentials_path().read_text()

    credentials = studio.get("/api/credentials")
    assert credentials.status_code == 200
    assert credentials.json() == {"mode": "token", "baseUrl": cloud.url, "orgSlug": "team",
                                  "projectSlug": None}
    me = studio.get("/api/me").json()
    assert me["user"]["email"] == "ann@example.com" and me["user"]["anonymous"] is False
    assert [(o["slug"], o["role"]) for o in me["orgs"]] == [("team", ROLE_MEMBER)]
    assert studio.get("/api/deployments").json() == {"deployments": [], "scopeMissing": True}

    created = studio.post("/api/deployments", json={"slug": "ann-bot", "target": BASE})
    assert created.status_code == 200, created.text
    state = read_state(studio.cwd)
    assert (state.org_slug, state.project_slug) == ("team", "my-project")
    projects = CloudApiClient(base_url=cloud.url, token=token).list_projects("team").projects
    assert [(p.slug, p.id) for p in projects] == [("my-project", state.project_id)]
    listed = studio.get("/api/deployments").json()["deployments"]
    assert [d["slug"] for d in listed] == ["ann-bot"]
    assert studio.get("/api/credentials").json()["projectSlug"] == "my-project"

    uploaded = studio.post("/api/datasets", params={"name": "tickets.jsonl"},
                           content=LINE.encode())
    assert uploaded.status_code == 201, uploaded.text
    job = add_job(cloud, SimpleNamespace(org_id=projects[0].org_id, project_id=state.project_id))
    assert [j["id"] for j in studio.get("/api/jobs").json()["jobs"]] == [job]
    assert studio.post(f"/api/jobs/{job}/cancel").status_code == 409  # already completed

    assert read_credentials() == saved and credentials_path().read_text() == file_before


def test_arkor_token_is_used_as_is_and_no_file_is_written(
        studio: Studio, cloud: Any, arkor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    token = new_user(arkor, "ci-bot@example.com")  # the owner of a new personal org
    monkeypatch.setenv("ARKOR_TOKEN", token)

    credentials = studio.get("/api/credentials").json()
    assert credentials["mode"] == "token" and credentials["orgSlug"].startswith("ci-bot")
    me = studio.get("/api/me").json()
    assert me["user"]["email"] == "ci-bot@example.com"
    assert [(o["slug"], o["role"]) for o in me["orgs"]] == [(credentials["orgSlug"], ROLE_OWNER)]

    created = studio.post("/api/deployments", json={"slug": "ci-bot", "target": BASE})
    assert created.status_code == 200, created.text
    assert read_state(studio.cwd).org_slug == credentials["orgSlug"]
    assert not credentials_path().exists()  # never an anonymous identity beside the token


def test_a_viewer_reads_and_every_write_is_the_403_naming_the_role(
        studio: Studio, cloud: Any, arkor: Any) -> None:
    owner = new_user(arkor, "olga@example.com", "--org", "crew", "--role", ROLE_OWNER)
    project, deployment = shared_project(cloud, owner, "crew", "shared")
    job = add_job(cloud, SimpleNamespace(org_id=project.org_id, project_id=project.id))
    login(arkor, new_user(arkor, "vic@example.com", "--org", "crew", "--role", ROLE_VIEWER))
    write_state(ProjectState("crew", "shared", project.id), studio.cwd)

    me = studio.get("/api/me").json()
    assert [(o["slug"], o["role"]) for o in me["orgs"]] == [("crew", ROLE_VIEWER)]
    listed = studio.get("/api/deployments")
    assert listed.status_code == 200
    assert [d["id"] for d in listed.json()["deployments"]] == [deployment]
    assert studio.get(f"/api/deployments/{deployment}").status_code == 200
    assert studio.get(f"/api/deployments/{deployment}/keys").json() == {"keys": []}
    assert [j["id"] for j in studio.get("/api/jobs").json()["jobs"]] == [job]

    needs_member = refusal(ROLE_MEMBER, "crew", ROLE_VIEWER)
    writes = [
        ("POST", "/api/deployments", {"json": {"slug": "vic-bot", "target": BASE}}),
        ("PATCH", f"/api/deployments/{deployment}", {"json": {"enabled": False}}),
        ("DELETE", f"/api/deployments/{deployment}", {}),
        ("POST", f"/api/deployments/{deployment}/keys", {"json": {"label": "vic"}}),
        ("POST", "/api/datasets", {"content": LINE.encode()}),
        ("POST", "/api/train", {"json": {"dataset": "demo"}}),
        ("POST", f"/api/jobs/{job}/cancel", {}),
        ("POST", "/api/inference/chat", {"json": {
            "baseModel": BASE["baseModel"], "messages": [{"role": "user", "content": "hi"}]}}),
    ]
    for method, path, body in writes:
        response = studio.request(method, path, **body)
        assert (response.status_code, response.json()) == (403, {"error": needs_member}), path
    assert "needs the member role" in needs_member and "you are a viewer" in needs_member


def test_a_viewer_without_state_adopts_the_directory_s_project_or_is_told_what_to_use(
        cloud: Any, arkor: Any, tmp_path: Path) -> None:
    owner = new_user(arkor, "oscar@example.com", "--org", "guild", "--role", ROLE_OWNER)
    project, _ = shared_project(cloud, owner, "guild", "docs-site")
    login(arkor, new_user(arkor, "val@example.com", "--org", "guild", "--role", ROLE_VIEWER))

    elsewhere = tmp_path / "scratch"
    elsewhere.mkdir()
    for studio in serve_studio(cloud.url, elsewhere):
        response = studio.post("/api/deployments", json={"slug": "val-bot", "target": BASE})
        assert response.status_code == 403
        message = response.json()["error"]
        assert "creating one ('scratch' in org 'guild') was refused" in message
        assert refusal(ROLE_MEMBER, "guild", ROLE_VIEWER) in message
        assert "(docs-site)" in message and ".arkor/state.json" in message
        assert not studio.state_file.exists()

    same_name = tmp_path / "docs-site"
    same_name.mkdir()
    for studio in serve_studio(cloud.url, same_name):
        response = studio.post("/api/deployments", json={"slug": "val-bot", "target": BASE})
        assert response.json() == {"error": refusal(ROLE_MEMBER, "guild", ROLE_VIEWER)}
        assert read_state(same_name) == ProjectState("guild", "docs-site", project.id)
        assert [d["slug"] for d in studio.get("/api/deployments").json()["deployments"]] == [
            "docs-site-bot"]


@pytest.fixture(params=[SIGNUP_INVITE, SIGNUP_DISABLED])
def closed_cloud(request: pytest.FixtureRequest, cloud: Any) -> Iterator[tuple[str, str]]:
    """A control plane on the same database that signs nobody up anonymously: its URL and
    its sign-up policy."""
    with LiveServer(create_app(replace(cloud.settings, signup=request.param))) as url:
        yield url, request.param


def test_no_credentials_where_anonymous_sign_up_is_off_says_how_to_sign_in(
        closed_cloud: tuple[str, str], arkor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url, policy = closed_cloud
    expected = (SIGN_UP_BY_INVITE if policy == SIGNUP_INVITE else NO_SIGN_UP).format(url=url)
    for studio in serve_studio(url, Path.cwd()):
        for method, path in [("GET", "/api/credentials"), ("GET", "/api/me"),
                             ("GET", "/api/base-models"), ("POST", "/api/deployments")]:
            body = {"slug": "nobody", "target": BASE} if method == "POST" else None
            response = studio.request(method, path, json=body)
            assert (response.status_code, response.json()) == (401, {"error": expected}), path
            assert response.headers["x-frame-options"] == "DENY"
        assert not credentials_path().exists()
        assert studio.get("/api/jobs").json() == {"jobs": []}
        assert studio.get("/api/deployments").json()["scopeMissing"] is True

        monkeypatch.setenv("ARKOR_CLOUD_API_URL", url)
        login(arkor, new_user(arkor, f"late-{policy}@example.com"))  # no restart needed
        assert studio.get("/api/credentials").json()["mode"] == "token"
        assert studio.get("/api/me").json()["user"]["email"] == f"late-{policy}@example.com"
    assert "`arkor login --token TOKEN`" in expected
    assert ("`arkor login --invite CODE`" in expected) == (policy == SIGNUP_INVITE)


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_a_refused_token_says_sign_in_again_and_is_never_replaced(
        studio: Studio, cloud: Any, arkor: Any, how: str) -> None:
    token = new_user(arkor, f"{how}@example.com")
    saved = login(arkor, token)
    assert studio.post("/api/deployments", json={"slug": f"{how}-bot", "target": BASE}
                       ).status_code == 200
    file_before = credentials_path().read_text()
    if how == "revoked":
        CloudApiClient(base_url=cloud.url, token=token).revoke_access_token(
            token_id(cloud, token))
    else:
        with cloud.app.state.db.session() as session:
            user = users.user_by_email(session, f"{how}@example.com")
            session.execute(update(AccessToken).where(AccessToken.user_id == user.id)
                            .values(expires_at=utcnow() - timedelta(seconds=1)))

    expected = FILE_TOKEN_REFUSED.format(url=cloud.url, path=credentials_path())
    chat = {"baseModel": BASE["baseModel"], "messages": [{"role": "user", "content": "hi"}]}
    for method, path, body in [
            ("GET", "/api/me", None), ("GET", "/api/deployments", None),
            ("GET", "/api/jobs", None), ("POST", "/api/inference/chat", chat),
            ("POST", "/api/deployments", {"slug": f"{how}-two", "target": BASE})]:
        response = studio.request(method, path, json=body)
        assert (response.status_code, response.json()) == (401, {"error": expected}), path
    assert "revoked or has expired" in expected and "arkor login --force --token" in expected
    assert studio.get("/api/credentials").json()["mode"] == "token"
    assert read_credentials() == saved and credentials_path().read_text() == file_before


def test_a_refused_arkor_token_names_the_variable(
        studio: Studio, cloud: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARKOR_TOKEN", "arkor_pat_not-a-token")
    expected = ENV_TOKEN_REFUSED.format(url=cloud.url)
    for path in ("/api/credentials", "/api/me"):
        response = studio.get(path)
        assert (response.status_code, response.json()) == (401, {"error": expected}), path
    assert not credentials_path().exists()
