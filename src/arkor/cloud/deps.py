"""What ``create_app`` keeps on ``app.state``, typed, as FastAPI dependencies.

A route declares ``db: DatabaseDep`` (``SettingsDep``, ``SupervisorDep``, ``EnginesDep``)
instead of reading ``request.app.state``; code outside a route calls the getter.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from arkor.cloud.settings import Settings
from arkor.cloud.supervisor import JobSupervisor
from arkor.edge.serving import EngineProvider
from arkor.store.db import Database


def get_database(request: Request) -> Database:
    return request.app.state.db  # type: ignore[no-any-return]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_supervisor(request: Request) -> JobSupervisor:
    return request.app.state.supervisor  # type: ignore[no-any-return]


def get_engines(request: Request) -> EngineProvider:
    return request.app.state.engines  # type: ignore[no-any-return]


DatabaseDep = Annotated[Database, Depends(get_database)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SupervisorDep = Annotated[JobSupervisor, Depends(get_supervisor)]
EnginesDep = Annotated[EngineProvider, Depends(get_engines)]
