"""The edge: one deployment's OpenAI-compatible API, found by slug.

``POST /v1/chat/completions`` (:mod:`arkor.edge.chat`), ``POST /v1/completions``
(:mod:`arkor.edge.completions`), ``POST /v1/responses`` (:mod:`arkor.edge.responses`),
``GET /v1/models`` and ``GET /v1/models/{id}``, and OpenAI's stored-completion routes
(:mod:`arkor.edge.stored`). Each call answered is kept as a run (:mod:`arkor.edge.runs`). The
deployment's target decides the model and the request's ``model`` field is ignored, except on
a model menu, where ``model`` picks one of the operator's public base models (none: the
menu's default) and ``GET /v1/models`` lists them. Unknown,
disabled and deleted deployments look the same: 404. Every answer carries ``x-request-id``
(the caller's, if it sent one).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from arkor.edge import chat, completions, rate_limits, responses, runs, stored
from arkor.edge import openai_wire as wire
from arkor.edge.directory import DeploymentDirectory, ServedDeployment
from arkor.edge.keys import KeyUsage, authenticate
from arkor.edge.openai_wire import WireError
from arkor.edge.serving import EngineProvider
from arkor.store.tables import utcnow

log = logging.getLogger("arkor.edge")
PARSE_ON_LOOP_BYTES = 64 * 1024
SLUG_SCOPE_KEY = "arkor.slug"
MODELS = "/v1/models"
ROUTES = ("POST /v1/chat/completions, POST /v1/completions, POST /v1/responses, "
          "GET /v1/models and GET /v1/models/{id}, and the stored completions "
          "(/v1/chat/completions/{id}, GET /v1/responses/{id})")


def not_found(slug: str) -> WireError:
    return WireError(404, f"No deployment named {slug!r} is serving here (it may not exist, "
                          "be disabled, or have been deleted).", code="deployment_not_found")


class EdgeApp:
    def __init__(self, directory: DeploymentDirectory, usage: KeyUsage,
                 engines: EngineProvider, recorder: runs.Recorder | None = None,
                 stored_completions: stored.StoredCompletions | None = None) -> None:
        self.directory = directory
        self.usage = usage
        self.engines = engines
        self.recorder = recorder
        self.stored = stored_completions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        request_id = request.headers.get("x-request-id") or f"req_{uuid.uuid4().hex}"
        token = runs.current.set(None)
        status = 500  # unless an answer goes out
        streamed = False
        recorded = False

        def record(tap: runs.RunTap | None) -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            if tap is not None and self.recorder is not None:
                tap.close(status, stream=streamed)
                self.recorder.submit(tap)

        try:
            try:
                response = await self.handle(request, scope[SLUG_SCOPE_KEY], request_id)
            except WireError as exc:
                runs.failed(exc.message)
                response = JSONResponse(exc.body(), status_code=exc.status,
                                        headers=exc.headers)
            except Exception:
                log.exception("edge request %s failed", request_id)
                runs.failed("Internal error")
                response = JSONResponse(WireError(500, "Internal error", kind="server_error",
                                                  code="internal_error").body(),
                                        status_code=500)
            response.headers["x-request-id"] = request_id
            status, streamed = response.status_code, isinstance(response, StreamingResponse)
            tap = runs.current.get()

            async def send_recorded(message: Message) -> None:
                # The run goes to the recorder before the answer's last bytes go out, so a
                # client that retrieves a stored answer as soon as it has it finds it.
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    record(tap)
                await send(message)

            await response(scope, receive, send_recorded)
        finally:
            record(runs.current.get())  # an answer cut short (or none): recorded as it ended
            runs.current.reset(token)

    async def deployment(self, slug: str) -> ServedDeployment:
        hit, served = self.directory.cached(slug)
        if not hit:
            served = await run_in_threadpool(self.directory.load, slug)
        if served is None or not served.enabled or (served.expires_at is not None
                                                    and served.expired(utcnow())):
            raise not_found(slug)
        return served

    def open_run(self, served: ServedDeployment, path: str, request_id: str,
                 key_id: str | None) -> runs.RunTap | None:
        """The tap for this call: metered always, kept as a run unless retention is
        ``disabled``."""
        if self.recorder is None:
            return None
        # Positionally (deployment, project, route, request id, key id, key prefix, base model,
        # adapter, keep): for every call, and keywords cost a tap a third more to make.
        tap = runs.RunTap(served.id, served.project_id, RUN_ROUTES[path], request_id, key_id,
                          served.key_prefixes.get(key_id) if key_id else None,
                          served.base_model, served.adapter.key if served.adapter else None,
                          served.run_retention_mode != "disabled")
        runs.current.set(tap)
        return tap

    async def handle(self, request: Request, slug: str, request_id: str = "") -> Response:
        path, method = request.scope["path"], request.method
        answer = POST_ROUTES.get(path)
        keeps = self.stored is not None and stored.is_stored_route(path, method)
        if keeps:
            answer = None
        elif answer is None and path != MODELS and not path.startswith(MODELS + "/"):
            raise WireError(404, f"Unknown route {method} {path}; a deployment serves {ROUTES}",
                            code="unknown_route")
        served = await self.deployment(slug)
        key_id = authenticate(served, request.headers)
        if key_id is not None:
            self.usage.touch(key_id)
        if keeps:
            assert self.stored is not None
            return await self.stored.serve(request, served)
        if answer is None:
            if method != "GET":
                raise WireError(405, f"Use GET {path}", code="method_not_allowed")
            return JSONResponse(models_body(served, path.removeprefix(MODELS + "/")
                                            if path != MODELS else None))
        if method != "POST":
            raise WireError(405, f"Use POST {path}", code="method_not_allowed")
        await rate_limits.admit(request.scope, served, key_id)  # 429 before the engine
        tap = self.open_run(served, path, request_id, key_id)
        raw = await request.body()  # bounded by ARKOR_MAX_BODY_KB (arkor.middleware.guards)
        if len(raw) > PARSE_ON_LOOP_BYTES:  # big bodies are parsed off the event loop
            body = await run_in_threadpool(wire.parse_body, raw)
        else:
            body = wire.parse_body(raw)
        stored.prepare(served, path, body)
        base_model, model = served.base_model, served.slug
        if served.menu:
            base_model = model = menu_choice(served, body.get("model"))
            if tap is not None:
                tap.base_model = base_model
        if tap is not None and tap.keep:  # a call not kept never holds its body past the call
            tap.request, tap.request_bytes = body, len(raw)
        return await answer(request.receive, self.engines, body, base_model=base_model,
                            adapter=served.adapter, model=model)


POST_ROUTES = {"/v1/chat/completions": chat.serve, "/v1/completions": completions.serve,
               "/v1/responses": responses.serve}
RUN_ROUTES = {"/v1/chat/completions": "chat.completions", "/v1/completions": "completions",
              "/v1/responses": "responses"}


def menu_choice(served: ServedDeployment, wanted: object) -> str:
    """The base model a model-menu request names in ``model`` (absent or null: the default)."""
    if wanted is None:
        return served.menu[0]
    if not isinstance(wanted, str):
        raise WireError(400, "model must be a string: one of this deployment's models "
                             "(GET /v1/models lists them)", param="model", code="invalid_type")
    if wanted not in served.menu:
        raise WireError(404, f"The model {wanted[:100]!r} does not exist here; this deployment "
                             f"serves {', '.join(served.menu)} (the first when model is "
                             "omitted)", param="model", code="model_not_found")
    return wanted


def model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "arkor"}


def models_body(served: ServedDeployment, model_id: str | None) -> dict[str, Any]:
    """``GET /v1/models`` (``model_id`` None) or ``GET /v1/models/{model_id}``: the slug, or a
    model menu's models."""
    names = served.menu or (served.slug,)
    if model_id is None:
        return {"object": "list", "data": [model_object(name) for name in names]}
    if model_id not in names:
        raise WireError(404, f"The model {model_id[:100]!r} does not exist here; this "
                             f"deployment serves {', '.join(names)}", param="model",
                        code="model_not_found")
    return model_object(model_id)
