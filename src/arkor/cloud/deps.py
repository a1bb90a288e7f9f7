"""What the control plane keeps on ``app.state``, typed, as FastAPI dependencies.

A route declares ``db: DatabaseDep`` (``SettingsDep``, ``SupervisorDep``, ``ChatDep``)
instead of reading ``request.app.state``; code outside a route calls the getter.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import Depends, Request, Response

from arkor.cloud.settings import Settings
from arkor.cloud.supervisor import JobSupervisor
from arkor.engine.base import AdapterRef
from arkor.store.db import Database


class ChatAnswerer(Protocol):
    """Answers an OpenAI chat body with the server's engine, as a deployment would: a
    ``chat.completion``, or its SSE chunks when ``body["stream"]``. :mod:`arkor.server` hands
    in the edge's serving, so the control plane imports nothing of the edge. A refusal is
    raised as ``arkor.cloud.errors.ApiError``. Each call is metered into ``project_id``'s
    usage (the project's inference buckets), refused ones too."""

    async def __call__(self, request: Request, body: dict[str, Any], *, project_id: str,
                       base_model: str, adapter: AdapterRef | None, model: str
                       ) -> Response: ...


def get_database(request: Request) -> Database:
    return request.app.state.db  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_supervisor(request: Request) -> JobSupervisor:
    return request.app.state.supervisor  # type: ignore[no-any-return]


def get_chat(request: Request) -> ChatAnswerer:
    return request.app.state.chat  # type: ignore[no-any-return]


DatabaseDep = Annotated[Database, Depends(get_database)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SupervisorDep = Annotated[JobSupervisor, Depends(get_supervisor)]
ChatDep = Annotated[ChatAnswerer, Depends(get_chat)]
