"""``/api/deployments/{id}/domains*``: a deployment's custom domains, through the SDK's domain
methods: list, add (the answer carries the TXT record to create), verify now, remove.

The control plane judges the name (its 400 says why) and does the DNS lookup; a failed lookup
comes back as its 502. Scope and errors are the deployment routes' own
(:func:`~arkor.studio.api_deployments.with_client`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from arkor.sdk import AsyncCloudApiClient, ProjectScope
from arkor.studio.api_deployments import path_id, with_client
from arkor.studio.deployment_input import parse_json
from arkor.studio.errors import InvalidBody
from arkor.studio.upstream import wire

DOMAIN_BODY = 'Domain body must be a JSON object {"domain": "api.example.com"}.'


def _domain(raw: bytes) -> str:
    body = parse_json(raw)
    if not isinstance(body, dict) or not isinstance(body.get("domain"), str):
        raise InvalidBody(DOMAIN_BODY)
    domain: str = body["domain"]
    return domain


async def list_domains(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        return {"domains": wire(await client.list_domains(path_id(request), scope))}

    return await with_client(request, "read", handler)


async def add_domain(request: Request) -> Response:
    domain = _domain(await request.body())

    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        return {"domain": wire(await client.add_domain(path_id(request), scope, domain=domain))}

    return await with_client(request, "mutate", handler)


async def verify_domain(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        checked = await client.verify_domain(path_id(request), path_id(request, "domain"), scope)
        return {"domain": wire(checked)}

    return await with_client(request, "mutate", handler)


async def remove_domain(request: Request) -> Response:
    async def handler(client: AsyncCloudApiClient, scope: ProjectScope) -> Any:
        await client.remove_domain(path_id(request), path_id(request, "domain"), scope)
        return {}

    return await with_client(request, "mutate", handler)


DOMAINS = "/api/deployments/{deployment_id}/domains"
routes = [
    Route(DOMAINS, list_domains, methods=["GET"]),
    Route(DOMAINS, add_domain, methods=["POST"]),
    Route(DOMAINS + "/{domain}/verify", verify_domain, methods=["POST"]),
    Route(DOMAINS + "/{domain}", remove_domain, methods=["DELETE"]),
]
