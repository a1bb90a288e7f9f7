"""``/api/deployments*``: a thin proxy over the SDK's deployment methods (contract §4.3).

Every answer is 200 JSON on success and ``{"error": ...}`` with the upstream status on
failure. Only creating a deployment may bootstrap ``.arkor/state.json``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arkor.contract.deployments import DEFAULT_AUTH_MODE
from arkor.sdk import (
    ANON_STATE_MISMATCH_MESSAGE,
    AsyncCloudApiClient,
    ConflictError,
    NotFoundError,
    ProjectScope,
)
from arkor.studio import deployment_input as inputs
from arkor.studio.api_identity import upstream_of
from arkor.studio.upstream import scope_of, wire

Intent = Literal["list", "read", "create", "mutate"]
Handler = Callable[[AsyncCloudApiClient, ProjectScope], Awaitable[Any]]

NO_USABLE_STATE = (
    "No usable .arkor/state.json for this workspace (missing or invalid). Create your first "
    "deployment to bootstrap one (anonymous, or signed in with a token), restore the file by "
    "hand (OAuth), or regenerate it with the correct { orgSlug, projectSlug, projectId } if "
    "it's currently corrupt."
)
SCOPE_MISSING = {"deployments": [], "scopeMissing": True}


async def with_client(request: Request, intent: Intent, handler: Handler) -> Response:
    """Runs ``handler`` in the workspace's scope; a :class:`Response` it returns is answered as
    is, anything else as JSON."""
    upstream = upstream_of(request)
    state = upstream.state()
    if state is None and intent == "list":
        return JSONResponse(SCOPE_MISSING)
    if state is None and intent != "create":
        raise NotFoundError(404, NO_USABLE_STATE)
    credentials = await upstream.ensure_credentials()
    if state is not None and upstream.usable_state(credentials) is None:
        if intent == "list":
            return JSONResponse(SCOPE_MISSING)
        raise ConflictError(409, ANON_STATE_MISMATCH_MESSAGE)
    scope = scope_of(state) if state else await upstream.ensure_scope(credentials)
    async with upstream.client(credentials) as client:
        result = await handler(client, scope)
    return result if isinstance(result, Response) else JSONResponse(result)


async def list_deployments(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        return {"deployments": wire(await client.list_deployments(scope))}

    return await with_client(request, "list", handler)


async def create_deployment(request: Request) -> Response:
    body = inputs.create_body(await request.body())

    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        deployment = await client.create_deployment(
            scope, slug=body["slug"], target=body["target"],
            auth_mode=body.get("authMode", DEFAULT_AUTH_MODE),
            run_retention_mode=body.get("runRetentionMode"),
            run_retention_days=body.get("runRetentionDays"),
        )
        return {"deployment": wire(deployment)}

    return await with_client(request, "create", handler)


def path_id(request: Request, name: str = "deployment_id") -> str:
    return str(request.path_params[name])


async def get_deployment(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        return {"deployment": wire(await client.get_deployment(path_id(request), scope))}

    return await with_client(request, "read", handler)


async def update_deployment(request: Request) -> Response:
    """The body goes upstream verbatim, so the control plane judges every field."""
    body = inputs.update_body(await request.body())

    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        response = await client.forward(
            "PATCH", f"/v1/endpoints/{quote(path_id(request), safe='')}", params=scope.params(),
            content=json.dumps(body).encode(), headers={"Content-Type": "application/json"},
            raise_for_status=True)
        return response.json()

    return await with_client(request, "mutate", handler)


async def delete_deployment(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        await client.delete_deployment(path_id(request), scope)
        return {}

    return await with_client(request, "mutate", handler)


async def list_keys(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        return {"keys": wire(await client.list_deployment_keys(path_id(request), scope))}

    return await with_client(request, "read", handler)


async def create_key(request: Request) -> Response:
    label = inputs.key_label(await request.body())

    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        key = await client.create_deployment_key(path_id(request), scope, label=label)
        return {"key": wire(key)}

    return await with_client(request, "mutate", handler)


async def update_key(request: Request) -> Response:
    """A key's rate limits, through the SDK's key update."""
    limits = inputs.key_limits(await request.body())

    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        key = await client.update_deployment_key(path_id(request), path_id(request, "key_id"),
                                                 scope, limits=limits)
        return {"key": wire(key)}

    return await with_client(request, "mutate", handler)


async def revoke_key(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        await client.revoke_deployment_key(path_id(request), path_id(request, "key_id"), scope)
        return {}

    return await with_client(request, "mutate", handler)


routes = [
    Route("/api/deployments", list_deployments, methods=["GET"]),
    Route("/api/deployments", create_deployment, methods=["POST"]),
    Route("/api/deployments/{deployment_id}", get_deployment, methods=["GET"]),
    Route("/api/deployments/{deployment_id}", update_deployment, methods=["PATCH"]),
    Route("/api/deployments/{deployment_id}", delete_deployment, methods=["DELETE"]),
    Route("/api/deployments/{deployment_id}/keys", list_keys, methods=["GET"]),
    Route("/api/deployments/{deployment_id}/keys", create_key, methods=["POST"]),
    Route("/api/deployments/{deployment_id}/keys/{key_id}", update_key, methods=["PATCH"]),
    Route("/api/deployments/{deployment_id}/keys/{key_id}", revoke_key, methods=["DELETE"]),
]
