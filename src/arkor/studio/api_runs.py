"""``/api/deployments/{id}/runs*``: a deployment's stored runs, through the SDK's run methods.

The list passes its filters and cursor on; the export is a file download (the chat dataset
the control plane writes, named for the deployment). Scope and errors are the deployment
routes' own (:func:`~arkor.studio.api_deployments.with_client`).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from arkor.contract.models import RUN_MARKS
from arkor.sdk import AsyncCloudApiClient, ProjectScope, RunFilters
from arkor.studio.api_deployments import path_id, with_client
from arkor.studio.deployment_input import parse_json
from arkor.studio.errors import InvalidBody
from arkor.studio.upstream import wire

EXPORT_TYPE = "application/x-ndjson"
LIMIT_NOT_A_NUMBER = "limit must be a whole number of runs per page."
MARK_BODY = ("Run mark body must be a JSON object {\"mark\": "
             + " | ".join(json.dumps(mark) for mark in (*RUN_MARKS, None)) + "}.")


def _filters(request: Request) -> RunFilters:
    query = request.query_params
    return RunFilters(status=query.get("status"), key_id=query.get("keyId"),
                      since=query.get("from"), until=query.get("to"), q=query.get("q"),
                      mark=query.get("mark"))


def _limit(request: Request) -> int | None:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return None
    if not raw.isdecimal():
        raise InvalidBody(LIMIT_NOT_A_NUMBER)
    return int(raw)


def _mark(raw: bytes) -> str | None:
    body = parse_json(raw)
    if not isinstance(body, dict) or set(body) != {"mark"} or body["mark"] not in (
            *RUN_MARKS, None):
        raise InvalidBody(MARK_BODY)
    mark: str | None = body["mark"]
    return mark


def export_filename(slug: str, filters: RunFilters) -> str:
    return f"{slug}-runs{f'-{filters.mark}' if filters.mark else ''}.jsonl"


async def list_runs(request: Request) -> Response:
    filters, limit = _filters(request), _limit(request)
    cursor = request.query_params.get("cursor") or None

    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        page = await client.list_runs(path_id(request), scope, filters=filters, limit=limit,
                                      cursor=cursor)
        return wire(page)

    return await with_client(request, "read", handler)


async def export_runs(request: Request) -> Response:
    filters = _filters(request)

    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        deployment = await client.get_deployment(path_id(request), scope)
        exported = await client.export_runs(deployment.id, scope, filters=filters)
        name = export_filename(deployment.slug, filters)
        return Response(exported.jsonl, media_type=EXPORT_TYPE, headers={
            "content-disposition": f'attachment; filename="{name}"',
            "x-arkor-exported": str(exported.exported),
            "x-arkor-skipped": str(exported.skipped)})

    return await with_client(request, "read", handler)


async def get_run(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        run = await client.get_run(path_id(request), path_id(request, "run_id"), scope)
        return {"run": wire(run)}

    return await with_client(request, "read", handler)


async def mark_run(request: Request) -> Response:
    mark = _mark(await request.body())

    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        run = await client.mark_run(path_id(request), path_id(request, "run_id"), mark, scope)
        return {"run": wire(run)}

    return await with_client(request, "mutate", handler)


async def delete_run(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        await client.delete_run(path_id(request), path_id(request, "run_id"), scope)
        return {}

    return await with_client(request, "mutate", handler)


async def delete_runs(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        return {"deleted": await client.delete_runs(path_id(request), scope)}

    return await with_client(request, "mutate", handler)


RUNS = "/api/deployments/{deployment_id}/runs"
routes = [
    Route(RUNS, list_runs, methods=["GET"]),
    Route(RUNS, delete_runs, methods=["DELETE"]),
    Route(RUNS + "/export", export_runs, methods=["GET"]),
    Route(RUNS + "/{run_id}", get_run, methods=["GET"]),
    Route(RUNS + "/{run_id}", mark_run, methods=["PATCH"]),
    Route(RUNS + "/{run_id}", delete_run, methods=["DELETE"]),
]
