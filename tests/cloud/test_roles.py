"""The role matrix, row by row, with an owner, a member, a viewer and a stranger; and the
members routes that change who is in an org (the org always keeps an owner).

Driven by ``arkor.cloud.roles.ROUTE_ROLES``: every row needs a request below, and every
scoped route needs a row (the app refuses to build otherwise), so a new route cannot skip it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from arkor.cloud.app import api_routes
from arkor.cloud.auth import SCOPES
from arkor.cloud.roles import ROUTE_ROLES, allows, scoped_operations
from arkor.contract.models import ROLE_MEMBER, ROLE_OWNER, ROLE_VIEWER
from arkor.engine.registry import EMBEDDED_MODEL_NAME
from arkor.sdk import BaseModelTarget, CloudApiClient, ProjectScope
from arkor.store import jobs, projects, runs, users
from arkor.store.tables import Run, utcnow
from tests.dns_server import TxtServer
from tests.scripted import scripted_cloud

HEADERS = {"X-Arkor-Client": "arkor/0.1.0"}
ORG = "roles"
STRANGER = "stranger"
CALLERS = (ROLE_OWNER, ROLE_MEMBER, ROLE_VIEWER, STRANGER)
CHAT_LINE = json.dumps({"messages": [{"role": "user", "content": "hi"},
                                     {"role": "assistant", "content": "hello"}]})


@dataclass(frozen=True)
class NewUser:
    id: str
    email: str
    token: str


@dataclass
class Team:
    cloud: Any
    tokens: dict[str, str]
    org_id: str
    project_id: str
    owner: CloudApiClient
    scope: ProjectScope = field(default_factory=lambda: ProjectScope(org_slug=ORG,
                                                                     project_slug="app"))
    shared_deployment: str = ""

    def call(self, caller: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**HEADERS, "Authorization": f"Bearer {self.tokens[caller]}",
                   **kwargs.pop("headers", {})}
        return httpx.request(method, self.cloud.url + path, headers=headers, timeout=30,
                             **kwargs)

    def user(self, role: str | None = None) -> NewUser:
        """A new user, a member of the org with ``role`` when given."""
        email = f"u-{uuid.uuid4().hex[:10]}@roles.example"
        with self.cloud.app.state.db.session() as session:
            created = users.create_user(session, email=email)
            if role:
                users.add_member(session, user_id=created.user.id, org_id=self.org_id,
                                 role=role)
            return NewUser(created.user.id, email, created.token.plaintext)

    def deployment(self) -> str:
        return self.owner.create_deployment(
            self.scope, slug=f"r-{uuid.uuid4().hex[:12]}",
            target=BaseModelTarget(base_model=EMBEDDED_MODEL_NAME)).id

    def shared(self) -> str:
        """One deployment for the rows that only read it or its runs: the org's deployments
        quota (ARKOR_QUOTA_DEPLOYMENTS) is not the point here."""
        if not self.shared_deployment:
            self.shared_deployment = self.deployment()
        return self.shared_deployment

    def domain(self) -> str:
        """A new custom domain of the shared deployment."""
        return self.owner.add_domain(self.shared(), self.scope,
                                     domain=f"r-{uuid.uuid4().hex[:12]}.example.com").domain

    def run(self) -> tuple[str, str]:
        """The shared deployment with one more stored run (as the edge's recorder writes it)."""
        deployment = self.shared()
        run_id = f"run_{uuid.uuid4().hex}"
        with self.cloud.app.state.db.session() as session:
            runs.add_runs(session, [Run(
                id=run_id, deployment_id=deployment, project_id=self.project_id,
                route="chat.completions", status="completed", http_status=200,
                request_id="req_1", base_model=EMBEDDED_MODEL_NAME, stream=False,
                request_json=json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
                response_json=None, prompt_tokens=1, completion_tokens=1, latency_ms=1,
                stored=False)])
        return deployment, run_id

    def job(self, status: str) -> str:
        artifacts = Path(self.cloud.settings.data_dir) / "artifacts" / str(uuid.uuid4())
        with self.cloud.app.state.db.session() as session:
            return jobs.create_job(
                session, org_id=self.org_id, project_id=self.project_id, name="r",
                config={"model": EMBEDDED_MODEL_NAME}, status=status,
                artifacts_dir=str(artifacts), completed_at=utcnow()).id


@pytest.fixture(scope="module")
def cloud(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A server whose custom-domain checks ask a local DNS server, so verifying one answers
    the same with or without a network."""
    with TxtServer() as dns, scripted_cloud(backend, tmp_path_factory.mktemp(f"roles-{backend}"),
                                            dns_nameservers=(dns.address,)) as (server, _):
        yield server


@pytest.fixture(scope="module")
def team(cloud) -> Iterator[Team]:
    tokens = {}
    with cloud.app.state.db.session() as session:
        for role in (ROLE_OWNER, ROLE_MEMBER, ROLE_VIEWER):
            created = users.create_user(session, email=f"{role}@roles.example", org_slug=ORG,
                                        role=role)
            tokens[role] = created.token.plaintext
            org_id = created.org.id
        tokens[STRANGER] = users.create_user(
            session, email="stranger@roles.example").token.plaintext
        project_id = projects.create_project(session, org_id=org_id, slug="app",
                                             name="app").id
    owner = CloudApiClient(base_url=cloud.url, token=tokens[ROLE_OWNER])
    yield Team(cloud=cloud, tokens=tokens, org_id=org_id, project_id=project_id, owner=owner)
    owner.close()


@dataclass(frozen=True)
class Request:
    path: str
    ok: int  # the status a caller with the role gets (documented in docs/api.md)
    kwargs: dict[str, Any] = field(default_factory=dict)
    project: bool = True


def org(path: str, ok: int, **kwargs: Any) -> Request:
    return Request(path, ok, kwargs, project=False)


# One request per row of the matrix, built fresh for every caller (deletes need their own).
# POST /v1/jobs sends a config the server refuses after the role check (400): a real job
# would start a runner. The import and the chat likewise end at their own checks.
REQUESTS: dict[tuple[str, str], Callable[[Team], Request]] = {
    ("GET", "/v1/projects"): lambda t: org("/v1/projects", 200),
    ("POST", "/v1/projects"): lambda t: org("/v1/projects", 201, json={
        "name": "p", "slug": f"p-{uuid.uuid4().hex[:8]}"}),
    ("GET", "/v1/members"): lambda t: org("/v1/members", 200),
    ("POST", "/v1/members"): lambda t: org("/v1/members", 201, json={
        "email": t.user().email, "role": ROLE_VIEWER}),
    ("PATCH", "/v1/members/{user_id}"): lambda t: org(
        f"/v1/members/{t.user(ROLE_VIEWER).id}", 200, json={"role": ROLE_MEMBER}),
    ("DELETE", "/v1/members/{user_id}"): lambda t: org(
        f"/v1/members/{t.user(ROLE_VIEWER).id}", 204),
    ("GET", "/v1/endpoints"): lambda t: Request("/v1/endpoints", 200),
    ("POST", "/v1/endpoints"): lambda t: Request("/v1/endpoints", 201, {"json": {
        "slug": f"r-{uuid.uuid4().hex[:12]}",
        "target": BaseModelTarget(base_model=EMBEDDED_MODEL_NAME).to_wire()}}),
    ("GET", "/v1/endpoints/{deployment_id}"): lambda t: Request(
        f"/v1/endpoints/{t.deployment()}", 200),
    ("PATCH", "/v1/endpoints/{deployment_id}"): lambda t: Request(
        f"/v1/endpoints/{t.deployment()}", 200, {"json": {"enabled": False}}),
    ("DELETE", "/v1/endpoints/{deployment_id}"): lambda t: Request(
        f"/v1/endpoints/{t.deployment()}", 204),
    ("GET", "/v1/endpoints/{deployment_id}/keys"): lambda t: Request(
        f"/v1/endpoints/{t.deployment()}/keys", 200),
    ("POST", "/v1/endpoints/{deployment_id}/keys"): lambda t: Request(
        f"/v1/endpoints/{t.deployment()}/keys", 201, {"json": {"label": "ci"}}),
    ("PATCH", "/v1/endpoints/{deployment_id}/keys/{key_id}"): lambda t: _key_limits(t),
    ("DELETE", "/v1/endpoints/{deployment_id}/keys/{key_id}"): lambda t: _key_delete(t),
    ("GET", "/v1/endpoints/{deployment_id}/domains"): lambda t: Request(
        f"/v1/endpoints/{t.shared()}/domains", 200),
    ("POST", "/v1/endpoints/{deployment_id}/domains"): lambda t: Request(
        f"/v1/endpoints/{t.shared()}/domains", 201, {"json": {
            "domain": f"r-{uuid.uuid4().hex[:12]}.example.com"}}),
    ("POST", "/v1/endpoints/{deployment_id}/domains/{domain}/verify"): lambda t: Request(
        f"/v1/endpoints/{t.shared()}/domains/{t.domain()}/verify", 200),
    ("DELETE", "/v1/endpoints/{deployment_id}/domains/{domain}"): lambda t: Request(
        f"/v1/endpoints/{t.shared()}/domains/{t.domain()}", 204),
    ("GET", "/v1/endpoints/{deployment_id}/usage"): lambda t: Request(
        f"/v1/endpoints/{t.shared()}/usage", 200),
    ("GET", "/v1/usage"): lambda t: Request("/v1/usage", 200),
    ("GET", "/v1/endpoints/{deployment_id}/runs"): lambda t: Request(
        f"/v1/endpoints/{t.shared()}/runs", 200),
    ("DELETE", "/v1/endpoints/{deployment_id}/runs"): lambda t: Request(
        f"/v1/endpoints/{t.run()[0]}/runs", 200),
    ("GET", "/v1/endpoints/{deployment_id}/runs/export"): lambda t: Request(
        f"/v1/endpoints/{t.shared()}/runs/export", 200),
    ("GET", "/v1/endpoints/{deployment_id}/runs/{run_id}"): lambda t: Request(
        "/v1/endpoints/{}/runs/{}".format(*t.run()), 200),
    ("PATCH", "/v1/endpoints/{deployment_id}/runs/{run_id}"): lambda t: Request(
        "/v1/endpoints/{}/runs/{}".format(*t.run()), 200, {"json": {"mark": "good"}}),
    ("DELETE", "/v1/endpoints/{deployment_id}/runs/{run_id}"): lambda t: Request(
        "/v1/endpoints/{}/runs/{}".format(*t.run()), 204),
    ("GET", "/v1/datasets"): lambda t: Request("/v1/datasets", 200),
    ("POST", "/v1/datasets"): lambda t: Request("/v1/datasets", 201, {
        "content": CHAT_LINE.encode(), "params": {"name": "d.jsonl"},
        "headers": {"content-type": "application/octet-stream"}}),
    ("DELETE", "/v1/datasets/{dataset_id}"): lambda t: Request(
        f"/v1/datasets/{t.owner.upload_dataset(t.scope, CHAT_LINE.encode()).id}", 204),
    ("GET", "/v1/jobs"): lambda t: Request("/v1/jobs", 200),
    ("POST", "/v1/jobs"): lambda t: Request("/v1/jobs", 400, {"json": {
        "name": "j", "config": {"model": "no-such-model"}}}),
    ("GET", "/v1/jobs/{job_id}"): lambda t: Request(f"/v1/jobs/{t.job('completed')}", 200),
    ("POST", "/v1/jobs/{job_id}/cancel"): lambda t: Request(
        f"/v1/jobs/{t.job('running')}/cancel", 200),
    ("GET", "/v1/jobs/{job_id}/events/stream"): lambda t: Request(
        f"/v1/jobs/{t.job('completed')}/events/stream", 200),
    ("POST", "/v1/jobs/import"): lambda t: Request("/v1/jobs/import", 400, {
        "data": {"name": "imported"}, "files": {"files": ("notes.txt", b"x")}}),
    ("POST", "/v1/inference/chat"): lambda t: Request("/v1/inference/chat", 404, {"json": {
        "messages": [{"role": "user", "content": "hi"}],
        "adapter": {"kind": "final", "jobId": str(uuid.uuid4())}}}),
}


def _key_limits(t: Team) -> Request:
    # On a deployment made before, when there is one: the org has a deployments quota.
    deployment = next((d.id for d in t.owner.list_deployments(t.scope)), None) or t.deployment()
    key = t.owner.create_deployment_key(deployment, t.scope, label="limited")
    return Request(f"/v1/endpoints/{deployment}/keys/{key.id}", 200,
                   {"json": {"limits": {"requestsPerMinute": 60}}})


def _key_delete(t: Team) -> Request:
    deployment = t.deployment()
    key = t.owner.create_deployment_key(deployment, t.scope, label="old")
    return Request(f"/v1/endpoints/{deployment}/keys/{key.id}", 204)


def test_every_scoped_route_has_a_row_and_every_row_a_request() -> None:
    assert scoped_operations(api_routes(), SCOPES) == set(ROUTE_ROLES)
    assert set(REQUESTS) == set(ROUTE_ROLES), "add a request for the new row to REQUESTS"


@pytest.mark.parametrize("operation", sorted(ROUTE_ROLES), ids=" ".join)
def test_each_route_answers_each_role_as_the_matrix_says(team, operation) -> None:
    needed = ROUTE_ROLES[operation]
    method, _ = operation
    for caller in CALLERS:
        request = REQUESTS[operation](team)
        kwargs = dict(request.kwargs)
        params = {"orgSlug": ORG, **({"projectSlug": "app"} if request.project else {}),
                  **kwargs.pop("params", {})}
        response = team.call(caller, method, request.path, params=params, **kwargs)
        if caller == STRANGER:
            assert response.status_code == 403, (caller, response.text)
            assert response.json()["error"] == f"You are not a member of org {ORG!r}"
        elif allows(caller, needed):
            assert response.status_code == request.ok, (caller, response.text)
        else:
            assert response.status_code == 403, (caller, response.text)
            assert response.json()["error"].startswith(
                f"This needs the {needed} role in org {ORG!r}; you are a {caller}.")


def test_me_shows_the_role_in_each_org(team) -> None:
    me = team.call(ROLE_VIEWER, "GET", "/v1/me").json()
    assert [(o["slug"], o["role"]) for o in me["orgs"]] == [(ORG, ROLE_VIEWER)]
    anonymous = CloudApiClient(base_url=team.cloud.url).create_anonymous_session()
    with CloudApiClient(base_url=team.cloud.url, token=anonymous.token) as client:
        assert [o.role for o in client.get_me().orgs] == [ROLE_OWNER]


def test_members_are_added_re_roled_and_removed_and_the_org_keeps_an_owner(team) -> None:
    owner = team.owner
    listed = owner.list_members(ORG)
    roles = {m.email: m.role for m in listed.members}
    assert roles[f"{ROLE_VIEWER}@roles.example"] == ROLE_VIEWER and listed.org.slug == ORG

    new = team.user()
    new_id, email = new.id, new.email
    added = owner.add_member(ORG, email=email.upper(), role=ROLE_VIEWER)
    assert (added.user_id, added.role) == (new_id, ROLE_VIEWER)
    again = team.call(ROLE_OWNER, "POST", "/v1/members", params={"orgSlug": ORG},
                      json={"email": email})
    assert again.status_code == 409 and "already a member" in again.json()["error"]
    unknown = team.call(ROLE_OWNER, "POST", "/v1/members", params={"orgSlug": ORG},
                        json={"email": "nobody@roles.example"})
    assert unknown.status_code == 404 and "arkor cloud users create" in unknown.json()["error"]
    bad_role = team.call(ROLE_OWNER, "PATCH", f"/v1/members/{new_id}",
                         params={"orgSlug": ORG}, json={"role": "king"})
    assert bad_role.status_code == 400
    missing = team.call(ROLE_OWNER, "DELETE", f"/v1/members/{uuid.uuid4()}",
                        params={"orgSlug": ORG})
    assert missing.status_code == 404

    # The only owner can be neither demoted nor removed; with a second owner, both work.
    owner_id = next(m.user_id for m in listed.members if m.role == ROLE_OWNER)
    for method, body in (("PATCH", {"role": ROLE_MEMBER}), ("DELETE", None)):
        last = team.call(ROLE_OWNER, method, f"/v1/members/{owner_id}",
                         params={"orgSlug": ORG}, json=body)
        assert last.status_code == 409 and "at least one owner" in last.json()["error"]
    assert owner.set_member_role(ORG, new_id, role=ROLE_OWNER).role == ROLE_OWNER
    assert owner.set_member_role(ORG, new_id, role=ROLE_MEMBER).role == ROLE_MEMBER
    owner.remove_member(ORG, new_id)
    assert new_id not in [m.user_id for m in owner.list_members(ORG).members]


def test_a_removed_member_loses_access_on_the_next_request(team) -> None:
    leaver = team.user()
    team.owner.add_member(ORG, email=leaver.email, role=ROLE_MEMBER)
    team.tokens["leaver"] = leaver.token
    params = {"orgSlug": ORG, "projectSlug": "app"}
    assert team.call("leaver", "GET", "/v1/endpoints", params=params).status_code == 200
    team.owner.remove_member(ORG, leaver.id)
    assert team.call("leaver", "GET", "/v1/endpoints", params=params).status_code == 403


def test_an_anonymous_owner_cannot_add_members(team) -> None:
    anonymous = CloudApiClient(base_url=team.cloud.url).create_anonymous_session()
    response = httpx.post(team.cloud.url + "/v1/members",
                          params={"orgSlug": anonymous.personal_org.slug},
                          json={"email": f"{ROLE_OWNER}@roles.example"},
                          headers={**HEADERS, "Authorization": f"Bearer {anonymous.token}"})
    assert response.status_code == 403 and "anonymous" in response.json()["error"]
