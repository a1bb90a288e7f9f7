"""Rate limits through the API and both SDK clients: set on a deployment and on a key,
partial, lifted with null, refused out of range, and shown in both DTOs."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from arkor import AsyncCloudApiClient, BaseModelTarget, NotFoundError, RateLimits
from tests.workspace import new_workspace

EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"
HEADERS = {"X-Arkor-Client": "arkor/0.1.0"}


def test_deployment_and_key_limits_are_set_partially_and_shown(cloud) -> None:
    ws = new_workspace(cloud.url, "limits")
    client = ws.client
    dep = client.create_deployment(ws.scope, slug=f"lim-{ws.org_id[:8]}",
                                   target=BaseModelTarget(base_model=EMBEDDED))
    assert dep.limits == RateLimits()
    assert dep.to_wire()["limits"] == {"requestsPerMinute": None, "tokensPerMinute": None,
                                       "concurrentRequests": None}

    dep = client.update_deployment(dep.id, ws.scope, limits={"requests_per_minute": 600,
                                                             "tokensPerMinute": 90_000})
    assert dep.limits == RateLimits(requests_per_minute=600, tokens_per_minute=90_000)
    dep = client.update_deployment(dep.id, ws.scope,
                                   limits=RateLimits(concurrent_requests=8))  # the rest kept
    assert dep.limits == RateLimits(requests_per_minute=600, tokens_per_minute=90_000,
                                    concurrent_requests=8)
    dep = client.update_deployment(dep.id, ws.scope, limits={"tokens_per_minute": None})
    assert dep.limits == RateLimits(requests_per_minute=600, concurrent_requests=8)
    assert client.get_deployment(dep.id, ws.scope).limits == dep.limits
    assert [d.limits for d in client.list_deployments(ws.scope)] == [dep.limits]

    key = client.create_deployment_key(dep.id, ws.scope, label="ci")
    [listed] = client.list_deployment_keys(dep.id, ws.scope)
    assert listed.limits == RateLimits()
    limited = client.update_deployment_key(dep.id, key.id, ws.scope,
                                           limits={"requestsPerMinute": 5})
    assert (limited.id, limited.limits) == (key.id, RateLimits(requests_per_minute=5))

    async def through_the_async_client() -> None:
        async with AsyncCloudApiClient(base_url=cloud.url, credentials=ws.credentials) as aclient:
            changed = await aclient.update_deployment_key(
                dep.id, key.id, ws.scope, limits={"concurrent_requests": 2})
            assert changed.limits == RateLimits(requests_per_minute=5, concurrent_requests=2)
            cleared = await aclient.update_deployment(
                dep.id, ws.scope, limits=dict.fromkeys(
                    ("requests_per_minute", "tokens_per_minute", "concurrent_requests")))
            assert cleared.limits == RateLimits()

    asyncio.run(through_the_async_client())
    [listed] = client.list_deployment_keys(dep.id, ws.scope)
    assert listed.limits == RateLimits(requests_per_minute=5, concurrent_requests=2)
    with pytest.raises(NotFoundError):
        client.update_deployment_key(dep.id, "no-such-key", ws.scope, limits={})


@pytest.mark.parametrize(("limits", "field"), [
    ({"requestsPerMinute": 0}, "requestsPerMinute"),
    ({"tokensPerMinute": -5}, "tokensPerMinute"),
    ({"concurrentRequests": 10_001}, "concurrentRequests"),
    ({"requestsPerMinute": True}, "requestsPerMinute"),
    ({"tokensPerMinute": "100"}, "tokensPerMinute"),
    (None, "limits"),
])
def test_out_of_range_limits_are_400_naming_the_field(cloud, limits, field) -> None:
    ws = new_workspace(cloud.url, "bad-limits")
    dep = ws.client.create_deployment(ws.scope, slug=f"bad-{ws.org_id[:8]}",
                                      target=BaseModelTarget(base_model=EMBEDDED))
    key = ws.client.create_deployment_key(dep.id, ws.scope, label="ci")
    headers = {**HEADERS, "Authorization": f"Bearer {ws.credentials.token}"}
    params = {"orgSlug": ws.scope.org_slug, "projectSlug": ws.scope.project_slug}
    for path in (f"/v1/endpoints/{dep.id}", f"/v1/endpoints/{dep.id}/keys/{key.id}"):
        answer = httpx.patch(cloud.url + path, params=params, headers=headers,
                             json={"limits": limits})
        assert answer.status_code == 400, answer.text
        assert field in answer.json()["error"]
    assert ws.client.get_deployment(dep.id, ws.scope).limits == RateLimits()
