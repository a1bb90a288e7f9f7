"""``POST /v1/inference/chat``: chat with a job's adapter or a base model, no deployment needed.

Used by the Studio Playground and the SDK. The body is camelCase; the answer is the OpenAI
chat completion (``stream: false``, the default here) or its SSE chunks (``stream: true``),
produced by the same engine and serving as the edge (handed in as ``ChatDep``), and metered
like a deployment's calls into the project's inference usage (``GET /v1/usage``).

Upstream's ``tools``, ``toolChoice``, ``parallelToolCalls``, ``responseFormat`` and
``structuredOutputs`` are passed on as OpenAI's ``tools``, ``tool_choice``,
``parallel_tool_calls``, ``response_format`` and vLLM's ``structured_outputs``: the edge's
parser validates them (one implementation), and its refusals come back as 400s here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from starlette.concurrency import run_in_threadpool

from arkor import targets
from arkor.cloud.auth import ProjectScope, ProjectScopeDep
from arkor.cloud.deps import ChatDep, DatabaseDep, SettingsDep
from arkor.cloud.errors import ApiError, error_responses
from arkor.cloud.settings import Settings
from arkor.contract.artifacts import ADAPTER_CONFIG
from arkor.contract.deployments import TARGET_ADAPTER, TARGET_BASE_MODEL, AdapterKind
from arkor.engine.base import AdapterRef
from arkor.store.db import Database
from arkor.store.deployments import TargetColumns

router = APIRouter(tags=["inference"])


class AdapterIn(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")
    kind: AdapterKind
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
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = Field(default=None, strict=True)
    response_format: dict[str, Any] | None = None
    structured_outputs: dict[str, Any] | None = None


PASSED_ON = ("temperature", "top_p", "max_tokens", "tools", "tool_choice",
             "parallel_tool_calls", "response_format", "structured_outputs")
"""Body fields handed to the edge's chat parser under their OpenAI (snake_case) names."""


def _target(db: Database, settings: Settings, scope: ProjectScope, body: InferenceBody
            ) -> tuple[str, AdapterRef | None]:
    if (body.adapter is None) == (body.base_model is None):
        raise ApiError(400, "Give exactly one of adapter ({kind, jobId, step?}) or baseModel")
    adapter = body.adapter
    target = (TargetColumns(target_kind=TARGET_BASE_MODEL, base_model=body.base_model)
              if adapter is None else
              TargetColumns(target_kind=TARGET_ADAPTER, adapter_kind=adapter.kind,
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
                         scope: ProjectScopeDep, settings: SettingsDep, chat: ChatDep) -> Any:
    base_model, adapter = await run_in_threadpool(_target, db, settings, scope, body)
    openai_body: dict[str, Any] = {"messages": body.messages, "stream": body.stream,
                                   "stream_options": {"include_usage": True}}
    for name in PASSED_ON:
        value = getattr(body, name)
        if value is not None:
            openai_body[name] = value
    return await chat(request, openai_body, project_id=scope.project_id, base_model=base_model,
                      adapter=adapter, model=adapter.key if adapter else base_model)
