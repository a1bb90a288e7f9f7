"""``POST /api/inference/chat``: the Playground's chat, relayed to the control plane as is."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from arkor.studio.api_identity import upstream_of


async def chat(request: Request) -> Response:
    upstream = upstream_of(request)
    body = await request.body()
    credentials = await upstream.ensure_credentials()
    scope = await upstream.ensure_scope(credentials)
    return await upstream.relay(credentials, "POST", "/v1/inference/chat",
                                params=scope.params(), content=body,
                                headers={"Content-Type": "application/json"},
                                default_type="application/json")


routes = [Route("/api/inference/chat", chat, methods=["POST"])]
