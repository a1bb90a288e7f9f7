"""``POST /api/inference/chat``: the Playground's chat, relayed to the control plane as is."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from arkor.sdk import CloudApiError
from arkor.studio.api_identity import upstream_of
from arkor.studio.upstream import error_response


async def chat(request: Request) -> Response:
    upstream = upstream_of(request)
    body = await request.body()
    try:
        credentials = await upstream.ensure_credentials()
        scope = await upstream.ensure_scope(credentials)
        return await upstream.stream(credentials, "POST", "/v1/inference/chat",
                                     params=scope.params(), content=body,
                                     headers={"Content-Type": "application/json"},
                                     default_type="application/json")
    except CloudApiError as exc:
        return error_response(exc)


routes = [Route("/api/inference/chat", chat, methods=["POST"])]
