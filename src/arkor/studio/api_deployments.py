"""``/api/deployments*``: a thin proxy over the SDK's deployment methods (contract §4.3).

Every answer is 200 JSON on success and ``{"error": ...}`` with the upstream status on
failure. Only creating a deployment may bootstrap ``.arkor/state.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arkor.sdk import ANON_STATE_MISMATCH_MESSAGE, AsyncCloudApiClient, CloudApiError, ProjectScope
from arkor.sdk._base import raise_for_response
from arkor.sdk._state import is_state_usable
from arkor.studio import deployment_input as inputs
from arkor.studio.api_identity import upstream_of
from arkor.studio.upstream import Creds, error_response, scope_of, wire

Intent = Literal["list", "read", "create", "mutate"]
Handler = Callable[[AsyncCloudApiClient, ProjectScope, Creds], Awaitable[Any]]
log = logging.getLogger("arkor.studio")

NO_USABLE_STATE = (
    "No usable .arkor/state.json for this workspace (missing or invalid). Create your first "
    "deployment to bootstrap one (anonymous), restore the file by hand (OAuth), or regenerate "
    "it with the correct { orgSlug, projectSlug, projectId } if it's currently corrupt."
)
SCOPE_MISSING = {"deployments": [], "scopeMissing": True}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _with_client(request: Request, intent: Intent, handler: Handler) -> Response:
    upstream = upstream_of(request)
    state = upstream.state()
    if state is None and intent == "list":
        return JSONResponse(SCOPE_MISSING)
    if state is None and intent != "create":
        return _error(404, NO_USABLE_STATE)
    try:
        credentials = await upstream.ensure_credentials()
        if state is not None and not is_state_usable(state, credentials):
            if intent == "list":
                return JSONResponse(SCOPE_MISSING)
            return _error(409, ANON_STATE_MISMATCH_MESSAGE)
        scope = scope_of(state) if state else await upstream.ensure_scope(credentials)
    except CloudApiError as exc:
        return error_response(exc)
    except Exception:
        log.exception("Studio could not prepare a deployment call")
        return _error(500, "Studio backend unavailable")
    try:
        async with upstream.client(credentials) as client:
            result = await handler(client, scope, credentials)
    except CloudApiError as exc:
        return error_response(exc)
    except Exception:
        log.exception("Studio deployment call failed")
        return _error(500, "Studio backend error")
    return JSONResponse(result)


def _invalid(exc: inputs.InvalidBody) -> JSONResponse:
    return _error(400, str(exc))


async def list_deployments(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope, _c: Creds) -> Any:
        return {"deployments": wire(await client.list_deployments(scope))}

    return await _with_client(request, "list", handler)


async def create_deployment(request: Request) -> Response:
    try:
        body = inputs.create_body(await request.body())
    except inputs.InvalidBody as exc:
        return _invalid(exc)

    async def handler(client: AsyncCloudApiClient, scope: ProjectScope, _c: Creds) -> Any:
        deployment = await client.create_deployment(
            scope, slug=body["slug"], target=body["target"],
            auth_mode=body.get("authMode", "fixed_api_key"),
            run_retention_mode=body.get("runRetentionMode"),
            run_retention_days=body.get("runRetentionDays"),
        )
        return {"deployment": wire(deployment)}

    return await _with_client(request, "create", handler)


def _id(request: Request, name: str = "deployment_id") -> str:
    return str(request.path_params[name])


async def get_deployment(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope, _c: Creds) -> Any:
        return {"deployment": wire(await client.get_deployment(_id(request), scope))}

    return await _with_client(request, "read", handler)


async def update_deployment(request: Request) -> Response:
    """The body goes upstream verbatim, so the control plane judges every field."""
    try:
        body = inputs.update_body(await request.body())
    except inputs.InvalidBody as exc:
        return _invalid(exc)
    upstream = upstream_of(request)

    async def handler(_client: AsyncCloudApiClient, scope: ProjectScope, creds: Creds) -> Any:
        response = await upstream.forward(
            creds, "PATCH", f"/v1/endpoints/{quote(_id(request), safe='')}",
            params=scope.params(), content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        return _checked(response)

    return await _with_client(request, "mutate", handler)


def _checked(response: Response) -> Any:
    import httpx

    replay = httpx.Response(response.status_code, headers=dict(response.headers),
                            content=bytes(response.body))
    raise_for_response(replay)
    return replay.json()


async def delete_deployment(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope, _c: Creds) -> Any:
        await client.delete_deployment(_id(request), scope)
        return {}

    return await _with_client(request, "mutate", handler)


async def list_keys(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope, _c: Creds) -> Any:
        return {"keys": wire(await client.list_deployment_keys(_id(request), scope))}

    return await _with_client(request, "read", handler)


async def create_key(request: Request) -> Response:
    try:
        label = inputs.key_label(await request.body())
    except inputs.InvalidBody as exc:
        return _invalid(exc)

    async def handler(client: AsyncCloudApiClient, scope: ProjectScope, _c: Creds) -> Any:
        key = await client.create_deployment_key(_id(request), scope, label=label)
        return {"key": wire(key)}

    return await _with_client(request, "mutate", handler)


async def revoke_key(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope, _c: Creds) -> Any:
        await client.revoke_deployment_key(_id(request), _id(request, "key_id"), scope)
        return {}

    return await _with_client(request, "mutate", handler)


routes = [
    Route("/api/deployments", list_deployments, methods=["GET"]),
    Route("/api/deployments", create_deployment, methods=["POST"]),
    Route("/api/deployments/{deployment_id}", get_deployment, methods=["GET"]),
    Route("/api/deployments/{deployment_id}", update_deployment, methods=["PATCH"]),
    Route("/api/deployments/{deployment_id}", delete_deployment, methods=["DELETE"]),
    Route("/api/deployments/{deployment_id}/keys", list_keys, methods=["GET"]),
    Route("/api/deployments/{deployment_id}/keys", create_key, methods=["POST"]),
    Route("/api/deployments/{deployment_id}/keys/{key_id}", revoke_key, methods=["DELETE"]),
]
