"""The edge: one deployment's OpenAI-compatible API, found by slug.

``POST /v1/chat/completions`` and ``GET /v1/models``. The deployment's target decides the
model; the request's ``model`` field is ignored. Unknown, disabled and deleted deployments
look the same: 404. Every answer carries ``x-request-id`` (the caller's, if it sent one).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from arkor.edge import openai_wire as wire
from arkor.edge.directory import DeploymentDirectory, ServedDeployment
from arkor.edge.keys import KeyUsage, authenticate
from arkor.edge.openai_wire import WireError
from arkor.edge.serving import (
    CLIENT_CLOSED_REQUEST,
    ClientGone,
    EngineProvider,
    complete_while_connected,
    generation_request,
    stream,
)

log = logging.getLogger("arkor.edge")
PARSE_ON_LOOP_BYTES = 64 * 1024
SLUG_SCOPE_KEY = "arkor.slug"
ROUTES = "POST /v1/chat/completions and GET /v1/models"


def not_found(slug: str) -> WireError:
    return WireError(404, f"No deployment named {slug!r} is serving here (it may not exist, "
                          "be disabled, or have been deleted).", code="deployment_not_found")


class EdgeApp:
    def __init__(self, directory: DeploymentDirectory, usage: KeyUsage,
                 engines: EngineProvider) -> None:
        self.directory = directory
        self.usage = usage
        self.engines = engines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        request_id = request.headers.get("x-request-id") or f"req_{uuid.uuid4().hex}"
        try:
            response = await self.handle(request, scope[SLUG_SCOPE_KEY])
        except WireError as exc:
            response = JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
        except Exception:
            log.exception("edge request %s failed", request_id)
            response = JSONResponse(WireError(500, "Internal error", kind="server_error",
                                              code="internal_error").body(), status_code=500)
        response.headers["x-request-id"] = request_id
        await response(scope, receive, send)

    async def deployment(self, slug: str) -> ServedDeployment:
        hit, served = self.directory.cached(slug)
        if not hit:
            served = await run_in_threadpool(self.directory.load, slug)
        if served is None or not served.enabled:
            raise not_found(slug)
        return served

    async def handle(self, request: Request, slug: str) -> Response:
        path, method = request.scope["path"], request.method
        if path not in ("/v1/chat/completions", "/v1/models"):
            raise WireError(404, f"Unknown route {method} {path}; a deployment serves {ROUTES}",
                            code="unknown_route")
        served = await self.deployment(slug)
        key_id = authenticate(served, request.headers)
        if key_id is not None:
            self.usage.touch(key_id)
        if path == "/v1/models":
            if method != "GET":
                raise WireError(405, f"Use GET {path}", code="method_not_allowed")
            return JSONResponse(models_body(served))
        if method != "POST":
            raise WireError(405, f"Use POST {path}", code="method_not_allowed")
        return await self.chat(request, served)

    async def chat(self, request: Request, served: ServedDeployment) -> Response:
        body = await request.body()  # bounded by ARKOR_MAX_BODY_KB (arkor.cloud.guards)
        if len(body) > PARSE_ON_LOOP_BYTES:  # big bodies are parsed off the event loop
            chat = await run_in_threadpool(parse_chat_body, body)
        else:
            chat = parse_chat_body(body)
        engine = await self.engines.get()
        generation = generation_request(chat, served.base_model, served.adapter,
                                        self.engines.limits)
        if not chat.stream:
            try:
                answer = await complete_while_connected(request.receive, engine, generation,
                                                        model=served.slug)
            except ClientGone:
                return Response(status_code=CLIENT_CLOSED_REQUEST)
            return JSONResponse(answer)
        frames = await stream(engine, generation, model=served.slug,
                              include_usage=chat.include_usage)
        return StreamingResponse(frames, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})


def parse_chat_body(body: bytes) -> wire.ChatRequest:
    return wire.parse_chat_request(wire.parse_body(body))


def models_body(served: ServedDeployment) -> dict[str, Any]:
    return {"object": "list", "data": [
        {"id": served.slug, "object": "model", "created": 0, "owned_by": "arkor"}]}
