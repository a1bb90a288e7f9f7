"""Every behaviour of the sync client, through the async client too."""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest

from arkor import (
    ApiConnectionError,
    AsyncCloudApiClient,
    AuthenticationError,
    BaseModelTarget,
    CloudApiClient,
    ConflictError,
    NotFoundError,
    aensure_credentials,
    aensure_project_state,
    ensure_credentials,
    read_state,
)
from arkor.sdk._base import BaseCloudApiClient
from tests.servers import free_port

EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_clients_have_the_same_methods() -> None:
    def methods(cls: type) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_")} - {"close", "aclose"}

    assert methods(CloudApiClient) == methods(AsyncCloudApiClient)
    for name in methods(AsyncCloudApiClient):
        method = getattr(AsyncCloudApiClient, name)
        if name in ("stream_events", "iter_runs"):  # async iterators, like the sync ones
            assert inspect.isasyncgenfunction(method)
            assert inspect.isgeneratorfunction(getattr(CloudApiClient, name))
        else:
            assert asyncio.iscoroutinefunction(method), name
        assert (inspect.signature(method).parameters.keys()
                == inspect.signature(getattr(CloudApiClient, name)).parameters.keys()), name
    assert issubclass(CloudApiClient, BaseCloudApiClient)


def test_async_lifecycle(cloud) -> None:
    async def scenario() -> None:
        creds = await aensure_credentials(base_url=cloud.url)
        async with AsyncCloudApiClient(base_url=cloud.url, credentials=creds) as client:
            state = await aensure_project_state(client, creds)
            assert read_state() == state
            scope = {"orgSlug": state.org_slug, "projectSlug": state.project_slug}
            me = await client.get_me()
            assert [o.slug for o in me.orgs] == [creds.org_slug]
            slug = f"async-{creds.org_slug[-6:]}"
            dep = await client.create_deployment(
                scope, slug=slug, target=BaseModelTarget(base_model=EMBEDDED)
            )
            with pytest.raises(ConflictError):
                await client.create_deployment(
                    scope, slug=slug, target=BaseModelTarget(base_model=EMBEDDED)
                )
            key = await client.create_deployment_key(dep.id, scope, label="ci")
            [listed] = await client.list_deployment_keys(dep.id, scope)
            assert listed.prefix == key.prefix
            await client.revoke_deployment_key(dep.id, key.id, scope)
            updated = await client.update_deployment(dep.id, scope, enabled=False)
            assert updated.enabled is False
            assert [d.id for d in await client.list_deployments(scope)] == [dep.id]
            assert (await client.list_base_models())[0].name == EMBEDDED
            await client.delete_deployment(dep.id, scope)
            with pytest.raises(NotFoundError):
                await client.get_deployment(dep.id, scope)

    asyncio.run(scenario())


def test_forward_answers_the_raw_response_with_the_clients_headers(cloud) -> None:
    creds = ensure_credentials(base_url=cloud.url)
    bad = {"base_url": cloud.url, "token": "not-a-token"}
    with CloudApiClient(base_url=cloud.url, credentials=creds) as client:
        assert client.forward("GET", "/v1/me").json()["orgs"][0]["slug"] == creds.org_slug
    with CloudApiClient(**bad) as client:
        assert client.forward("GET", "/v1/me").status_code == 401
        with pytest.raises(AuthenticationError):
            client.forward("GET", "/v1/me", raise_for_status=True)

    async def scenario() -> None:
        async with AsyncCloudApiClient(base_url=cloud.url, credentials=creds) as client:
            response = await client.forward("GET", "/v1/me", stream=True)
            assert json.loads(await response.aread())["orgs"][0]["slug"] == creds.org_slug
        async with AsyncCloudApiClient(**bad) as client:
            assert (await client.forward("GET", "/v1/me")).status_code == 401
            with pytest.raises(AuthenticationError):
                await client.forward("GET", "/v1/me", stream=True, raise_for_status=True)
        async with AsyncCloudApiClient(base_url=f"http://127.0.0.1:{free_port()}") as client:
            with pytest.raises(ApiConnectionError):
                await client.forward("GET", "/v1/me")

    asyncio.run(scenario())


def test_async_access_tokens_and_invites(cloud) -> None:
    from arkor.store import invites, users

    with cloud.app.state.db.session() as session:
        users.ensure_org(session, "parity")
        code = invites.create_invite(session, org_slug="parity", role="member").code

    async def scenario() -> None:
        async with AsyncCloudApiClient(base_url=cloud.url) as anonymous:
            joined = await anonymous.accept_invite(code, name="Async")
        assert joined.org.slug == "parity" and joined.user.name == "Async"
        async with AsyncCloudApiClient(base_url=cloud.url,
                                       token=joined.token.plaintext) as client:
            created = await client.create_access_token(name="async", expires_in_days=1)
            assert created.id in [t.id for t in await client.list_access_tokens()]
            await client.revoke_access_token(created.id)
            assert created.id not in [t.id for t in await client.list_access_tokens()]
            with pytest.raises(NotFoundError):
                await client.revoke_access_token(created.id)

    asyncio.run(scenario())


def test_async_members(cloud) -> None:
    from arkor.contract.models import ROLE_MEMBER, ROLE_OWNER, ROLE_VIEWER
    from arkor.store import users

    with cloud.app.state.db.session() as session:
        owner = users.create_user(session, email="parity-owner@example.com",
                                  org_slug="parity-members", role=ROLE_OWNER)
        other = users.create_user(session, email="parity-other@example.com")

    async def scenario() -> None:
        async with AsyncCloudApiClient(base_url=cloud.url,
                                       token=owner.token.plaintext) as client:
            added = await client.add_member("parity-members", email=other.user.email or "",
                                            role=ROLE_VIEWER)
            assert added.role == ROLE_VIEWER
            changed = await client.set_member_role("parity-members", added.user_id,
                                                   role=ROLE_MEMBER)
            assert changed.role == ROLE_MEMBER
            listed = await client.list_members("parity-members")
            assert {m.user_id for m in listed.members} == {owner.user.id, added.user_id}
            await client.remove_member("parity-members", added.user_id)
            with pytest.raises(NotFoundError):
                await client.remove_member("parity-members", added.user_id)
            with pytest.raises(ConflictError):
                await client.remove_member("parity-members", owner.user.id)

    asyncio.run(scenario())
