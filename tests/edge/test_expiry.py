"""Deployments that expire, over real HTTP with the scripted engine: expiresAt set, changed
and removed; an anonymous identity's deployments capped by ARKOR_ANONYMOUS_DEPLOYMENT_DAYS;
past it the edge answers 404, and the sweep deletes the deployment with its keys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest

from arkor.cloud.retention import RunSweeper
from arkor.cloud.settings import Settings
from arkor.sdk import BadRequestError, NotFoundError
from arkor.server import create_app
from arkor.store.tables import Deployment, DeploymentKey
from tests.conftest import CloudServer
from tests.doubles.engine import ScriptedEngine
from tests.edge.conftest import EMBEDDED
from tests.servers import LiveServer, database_url
from tests.workspace import new_workspace

HI = [{"role": "user", "content": "hi"}]
TARGET = {"kind": "base_model", "baseModel": EMBEDDED}


@pytest.fixture(scope="module")
def cloud(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudServer]:
    data_dir = tmp_path_factory.mktemp(f"expiry-{backend}")
    with database_url(backend, data_dir) as url:
        settings = Settings(data_dir=data_dir, database_url=url, signup_per_hour=100_000,
                            anonymous_deployment_days=7)
        app = create_app(settings, engine=ScriptedEngine())
        with LiveServer(app) as base:
            yield CloudServer(url=base, settings=settings, app=app)


def at(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_an_anonymous_identity_s_deployments_expire_within_the_setting(cloud) -> None:
    ws = new_workspace(cloud.url)  # anonymous
    plain = ws.client.create_deployment(ws.scope, slug=f"exp-a-{ws.org_id[:8]}", target=TARGET)
    assert abs(at(plain.expires_at) - (datetime.now(UTC) + timedelta(days=7))) \
        < timedelta(minutes=1)
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    capped = ws.client.create_deployment(ws.scope, slug=f"exp-b-{ws.org_id[:8]}",
                                         target=TARGET, expires_at=later)
    assert at(capped.expires_at) < datetime.now(UTC) + timedelta(days=7, minutes=1)
    sooner = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    moved = ws.client.update_deployment(capped.id, ws.scope, expires_at=sooner.isoformat())
    assert at(moved.expires_at) == sooner
    with pytest.raises(BadRequestError) as refused:
        ws.client.update_deployment(capped.id, ws.scope, expires_at=None)
    assert "ARKOR_ANONYMOUS_DEPLOYMENT_DAYS" in refused.value.message
    with pytest.raises(BadRequestError) as past:
        ws.client.create_deployment(ws.scope, slug=f"exp-c-{ws.org_id[:8]}", target=TARGET,
                                    expires_at="2020-01-01T00:00:00Z")
    assert "in the future" in past.value.message


def test_a_user_s_deployment_expires_only_when_asked(cloud) -> None:
    from arkor.sdk import CloudApiClient, ProjectScope
    from arkor.store import users

    with cloud.app.state.db.session() as session:
        made = users.create_user(session, email=f"u{time.time_ns()}@expiry.example",
                                 org_slug=f"o{time.time_ns() % 10**9}", role="owner")
        org = made.org.slug
    client = CloudApiClient(base_url=cloud.url, token=made.token.plaintext)
    project = client.create_project(org, name="p", slug="p")
    scope = ProjectScope(org_slug=org, project_slug=project.slug)
    kept = client.create_deployment(scope, slug=f"kept-{org}", target=TARGET)
    assert kept.expires_at is None
    soon = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    assert at(client.update_deployment(kept.id, scope, expires_at=soon.isoformat())
              .expires_at) == soon
    assert client.update_deployment(kept.id, scope, expires_at=None).expires_at is None


def test_past_its_expiry_the_edge_answers_404_and_the_sweep_deletes_it(cloud) -> None:
    ws = new_workspace(cloud.url)
    soon = datetime.now(UTC) + timedelta(seconds=2)
    deployment = ws.client.create_deployment(ws.scope, slug=f"exp-d-{ws.org_id[:8]}",
                                             target=TARGET, expires_at=soon.isoformat())
    key = ws.client.create_deployment_key(deployment.id, ws.scope, label="k")
    client = openai.OpenAI(base_url=deployment.base_url, api_key=key.plaintext, max_retries=0)
    assert client.chat.completions.create(model="x", messages=HI).choices
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)
    with pytest.raises(openai.NotFoundError) as gone:
        client.chat.completions.create(model="x", messages=HI)
    assert gone.value.code == "deployment_not_found"
    assert ws.client.get_deployment(deployment.id, ws.scope).expires_at is not None  # kept

    sweeper = RunSweeper(cloud.app.state.db)
    sweeper.sweep()
    assert sweeper.expired_deleted >= 1
    with pytest.raises(NotFoundError):
        ws.client.get_deployment(deployment.id, ws.scope)
    with cloud.app.state.db.session() as session:
        assert session.get(Deployment, deployment.id) is None
        assert session.get(DeploymentKey, key.id) is None
    assert httpx.post(deployment.base_url + "/chat/completions", json={"messages": HI},
                      headers={"Authorization": f"Bearer {key.plaintext}"}).status_code == 404
