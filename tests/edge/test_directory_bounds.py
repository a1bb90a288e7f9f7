"""Made-up deployment names cost the edge a bounded amount of memory and no database reads."""

from __future__ import annotations

import httpx

from arkor.edge.directory import MAX_NEGATIVE_ENTRIES
from tests.conftest import CloudServer
from tests.workspace import new_workspace


def test_slugs_that_cannot_exist_are_refused_unread_and_uncached(cloud: CloudServer) -> None:
    directory = cloud.app.state.edge.directory
    reads: list[str] = []
    real_read = directory._read
    directory._read = lambda slug: reads.append(slug) or real_read(slug)
    try:
        with httpx.Client(base_url=cloud.url, timeout=30) as http:
            for n in range(200):
                bad = f"{'x' * 4000}{n}" if n % 2 else f"Not_A_Slug.{n}"
                response = http.post(f"/d/{bad}/v1/chat/completions", json={"messages": []})
                assert response.status_code == 404, response.text
                assert response.json()["error"]["code"] == "deployment_not_found"
    finally:
        directory._read = real_read
    assert reads == []
    assert directory.unknown_count == 0


def test_unknown_slugs_are_remembered_up_to_a_bound(cloud: CloudServer) -> None:
    directory = cloud.app.state.edge.directory
    directory.invalidate()
    for n in range(MAX_NEGATIVE_ENTRIES + 500):
        assert directory.load(f"missing-{n}") is None
    assert directory.unknown_count == MAX_NEGATIVE_ENTRIES
    # The most recent unknown names are the ones kept.
    assert directory.cached(f"missing-{MAX_NEGATIVE_ENTRIES + 499}") == (True, None)
    assert directory.cached("missing-0") == (False, None)


def test_a_deployment_created_after_a_miss_is_found(cloud: CloudServer) -> None:
    ws = new_workspace(cloud.url, project_slug="bounds")
    directory = cloud.app.state.edge.directory
    assert directory.load("late-arrival") is None
    ws.client.create_deployment(ws.scope, slug="late-arrival",
                                target={"kind": "base_model",
                                        "baseModel": "HuggingFaceTB/SmolLM2-135M-Instruct"})
    hit, served = directory.cached("late-arrival")
    assert not hit and served is None
    assert directory.load("late-arrival") is not None
