"""A deleted deployment's slug stays with its project for ARKOR_SLUG_GRACE_DAYS: the owner may
take it back at once, another tenant gets 409 (the old URL's traffic is still the owner's)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from arkor.server import create_app
from arkor.store.tables import ReleasedSlug, utcnow
from tests.servers import LiveServer, database_url
from tests.workspace import Workspace, new_workspace

EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"


def create(ws: Workspace, slug: str) -> httpx.Response:
    return httpx.post(ws.client.base_url + "/v1/endpoints", params=ws.scope.params(),
                      json={"slug": slug, "target": {"kind": "base_model", "baseModel": EMBEDDED}},
                      headers={"X-Arkor-Client": "arkor/0.1.0",
                               "Authorization": f"Bearer {ws.credentials.token}"})


def create_then_delete(ws: Workspace, slug: str) -> None:
    response = create(ws, slug)
    assert response.status_code == 201, response.text
    ws.client.delete_deployment(response.json()["deployment"]["id"], ws.scope)


def holds(cloud) -> list[tuple[str, str]]:
    with cloud.app.state.db.session() as session:
        return [(r.slug, r.project_id) for r in session.execute(select(ReleasedSlug)).scalars()]


def test_another_tenant_cannot_take_a_just_released_slug(cloud) -> None:
    owner, stranger = new_workspace(cloud.url, "owner"), new_workspace(cloud.url, "stranger")
    create_then_delete(owner, "grace-bot")
    assert ("grace-bot", owner.project_id) in holds(cloud)
    refused = create(stranger, "grace-bot")
    assert refused.status_code == 409
    assert "recently released" in refused.json()["error"]
    sibling = owner.client.create_project(owner.scope.org_slug, name="other", slug="other")
    other_project = Workspace(owner.client, owner.credentials,
                              replace(owner.scope, project_slug=sibling.slug), sibling.id,
                              owner.org_id)
    assert create(other_project, "grace-bot").status_code == 409  # the hold is per project
    again = create(owner, "grace-bot")
    assert again.status_code == 201, again.text  # the owner takes it back at once
    assert ("grace-bot", owner.project_id) not in holds(cloud)
    assert create(stranger, "grace-bot").status_code == 409  # now simply taken
    assert "already taken" in create(stranger, "grace-bot").json()["error"]


def test_a_hold_past_its_grace_is_ignored_and_cleared(cloud) -> None:
    owner, stranger = new_workspace(cloud.url, "owner"), new_workspace(cloud.url, "stranger")
    create_then_delete(owner, "old-bot")
    with cloud.app.state.db.session() as session:
        session.execute(update(ReleasedSlug).where(ReleasedSlug.slug == "old-bot")
                        .values(released_at=utcnow() - timedelta(days=8)))
    assert create(stranger, "old-bot").status_code == 201
    assert "old-bot" not in [slug for slug, _ in holds(cloud)]


@pytest.fixture(scope="module")
def no_grace(cloud, backend, tmp_path_factory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp(f"no-grace-{backend}")
    with database_url(backend, data_dir) as url:
        settings = replace(cloud.settings, data_dir=data_dir, database_url=url,
                           slug_grace_days=0)
        with LiveServer(create_app(settings)) as server_url:
            yield server_url


def test_zero_grace_days_frees_a_slug_at_once(no_grace) -> None:
    owner, stranger = new_workspace(no_grace, "owner"), new_workspace(no_grace, "stranger")
    create_then_delete(owner, "free-bot")
    assert create(stranger, "free-bot").status_code == 201
