"""``/api/deployments/{id}/usage*``: a deployment's metered calls, through the SDK's usage
method.

The report passes its query on (``from``, ``to``, ``granularity``, ``keyId``). The per-key
totals are one usage call per key of the deployment, revoked keys included (their calls were
served), a few at a time; each key is its public fields, never a plaintext. Scope and errors
are the deployment routes' own (:func:`~arkor.studio.api_deployments.with_client`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from arkor.contract.models import DeploymentKey
from arkor.sdk import AsyncCloudApiClient, ProjectScope
from arkor.studio.api_deployments import path_id, with_client
from arkor.studio.upstream import wire

KEY_CALLS_AT_ONCE = 8
KEY_GRANULARITY = "day"


def _window(request: Request) -> dict[str, str | None]:
    query = request.query_params
    return {"since": query.get("from") or None, "until": query.get("to") or None}


def _deployment(request: Request) -> str:
    """The id as given (the SDK makes it one path segment)."""
    return path_id(request)


async def get_usage(request: Request) -> Response:
    query = request.query_params
    granularity = query.get("granularity") or None

    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        options: dict[str, Any] = {"key_id": query.get("keyId") or None, **_window(request)}
        if granularity:
            options["granularity"] = granularity
        return wire(await client.get_usage(_deployment(request), scope, **options))

    return await with_client(request, "read", handler)


async def get_key_usage(request: Request) -> Response:
    window = _window(request)

    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        keys = await client.list_deployment_keys(path_id(request), scope)
        gate = asyncio.Semaphore(KEY_CALLS_AT_ONCE)

        async def one(key: DeploymentKey) -> dict[str, Any]:
            async with gate:
                report = await client.get_usage(_deployment(request), scope, key_id=key.id,
                                                granularity=KEY_GRANULARITY, **window)
            return {"key": wire(key), "usage": wire(report.total)}

        return {"keys": await asyncio.gather(*(one(key) for key in keys))}

    return await with_client(request, "read", handler)


USAGE = "/api/deployments/{deployment_id}/usage"
routes = [
    Route(USAGE, get_usage, methods=["GET"]),
    Route(USAGE + "/keys", get_key_usage, methods=["GET"]),
]
