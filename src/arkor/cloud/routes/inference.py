"""``POST /v1/inference/chat``: chat with a job's adapter or a base model, no deployment needed.

Used by the Studio Playground and the SDK. The body is camelCase; the answer is the OpenAI
chat completion (``stream: false``, the default here) or its SSE chunks (``stream: true``),
produced by the same engine as the edge.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from starlette.concurrency import run_in_threadpool

from arkor.artifacts import ADAPTER_CONFIG
from arkor.cloud import targets
from arkor.cloud.auth import ProjectScope, ProjectScopeDep
from arkor.cloud.deps import DatabaseDep, EnginesDep, SettingsDep
from arkor.cloud.errors import ApiError, error_responses
from arkor.cloud.settings import Settings
from arkor.edge import openai_wire as wire
from arkor.edge.openai_wire import WireError
from arkor.edge.serving import (
    CLIENT_CLOSED_REQUEST,
    ClientGone,
    complete_while_connected,
    generation_request,
    stream,
)
from arkor.engine.base import AdapterRef
from arkor.store.db import Database
from arkor.store.deployments import TargetColumns

router = APIRouter(tags=["inference"])


class AdapterIn(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")
    kind: Literal["final", "checkpoint"]
    job_id: str = Field(min_length=1, max_length=64)
    step: int | None = Field(default=None, ge=0)


class InferenceBody(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")
    messages: list[dict[str, Any]] = Field(min_length=1)
    adapter: AdapterIn | None = None
    base_model: str | None = None
    temperature: float | None = Field(default=None, strict=True)
    top_p: float | None = Field(default=None, strict=True)
    max_tokens: int | None = Field(default=None, strict=True)
    stream: bool = Field(default=False, strict=True)


def _refuse_unsupported(body: InferenceBody) -> None:
    extra = body.model_extra or {}
    if extra.get("tools") and extra.get("toolChoice", "auto") != "none":
        raise ApiError(400, "tool_calling_not_configured: this server's engine does not "
                            "support tool calls")
    response_format = extra.get("responseFormat")
    if response_format not in (None, {"type": "text"}):
        raise ApiError(400, "responseFormat other than {\"type\": \"text\"} is not supported")
    if extra.get("structuredOutputs") is not None:
        raise ApiError(400, "structuredOutputs is not supported by this server's engine")


def _target(db: Database, settings: Settings, scope: ProjectScope, body: InferenceBody
            ) -> tuple[str, AdapterRef | None]:
    if (body.adapter is None) == (body.base_model is None):
        raise ApiError(400, "Give exactly one of adapter ({kind, jobId, step?}) or baseModel")
    adapter = body.adapter
    target = (TargetColumns(target_kind="base_model", base_model=body.base_model)
              if adapter is None else
              TargetColumns(target_kind="adapter", adapter_kind=adapter.kind,
                            job_id=adapter.job_id, checkpoint_step=adapter.step))
    with db.session() as session:
        base_model, ref = targets.resolve(session, scope.project_id, target,
                                          registry=settings.registry)
    if ref is not None and not (ref.path / ADAPTER_CONFIG).is_file():
        raise ApiError(404, f"The adapter files of job {target.job_id} are missing on this server")
    return base_model, ref


@router.post(
    "/v1/inference/chat",
    responses={**error_responses(400, 401, 403, 404, 426),
               200: {"content": {"application/json": {}, "text/event-stream": {}},
                     "description": "An OpenAI chat.completion, or its SSE chunks"}},
    summary="Chat with a job's adapter or a base model (OpenAI completion or SSE chunks)",
)
async def inference_chat(body: InferenceBody, request: Request, db: DatabaseDep,
                         scope: ProjectScopeDep, settings: SettingsDep, engines: EnginesDep) -> Any:
    _refuse_unsupported(body)
    base_model, adapter = await run_in_threadpool(_target, db, settings, scope, body)
    openai_body: dict[str, Any] = {"messages": body.messages, "stream": body.stream,
                                   "stream_options": {"include_usage": True}}
    for name, value in (("temperature", body.temperature), ("top_p", body.top_p),
                        ("max_tokens", body.max_tokens)):
        if value is not None:
            openai_body[name] = value
    model = adapter.key if adapter else base_model
    try:
        chat = wire.parse_chat_request(openai_body)
        engine = await engines.get()
        generation = generation_request(chat, base_model, adapter,
                                        engines.limits)
        if not body.stream:
            try:
                answer = await complete_while_connected(request.receive, engine, generation,
                                                        model=model)
            except ClientGone:
                return Response(status_code=CLIENT_CLOSED_REQUEST)
            return JSONResponse(answer)
        frames = await stream(engine, generation, model=model, include_usage=True)
    except WireError as exc:
        raise ApiError(exc.status, exc.message, headers=exc.headers or None) from exc
    return StreamingResponse(frames, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache, no-transform"})
