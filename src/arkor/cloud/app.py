"""The control plane: ``create_control_plane`` makes the FastAPI app from parts already built.

The parts (database, job supervisor, the chat answerer for ``/v1/inference/chat``) and the
lifespan that starts and stops them come from the composition root, :mod:`arkor.server`,
which also puts the edge and the ASGI guards in front. Nothing here imports the edge.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import BaseRoute

from arkor._version import SDK_VERSION
from arkor.cloud import roles, tls
from arkor.cloud.auth import SCOPES
from arkor.cloud.deps import ChatAnswerer
from arkor.cloud.errors import install_error_handlers
from arkor.cloud.input_guard import refuse_unstorable_input
from arkor.cloud.routes import (
    admin,
    auth,
    base_models,
    datasets,
    domains,
    endpoints,
    inference,
    job_events,
    job_import,
    jobs,
    members,
    projects,
    runs,
    tokens,
    usage,
)
from arkor.cloud.settings import Settings
from arkor.cloud.signup import SignupLimiter
from arkor.cloud.supervisor import JobSupervisor
from arkor.cloud.version_gate import client_version_gate
from arkor.store.db import Database

ROUTE_MODULES = (auth, tokens, admin, projects, members, endpoints, domains, runs, usage,
                 base_models, job_import, jobs, job_events, datasets, inference)


def api_routes() -> list[BaseRoute]:
    """Every ``/v1`` route, as its module declares it."""
    return [route for module in ROUTE_MODULES for route in module.router.routes]


def create_control_plane(
    settings: Settings, *, db: Database, supervisor: JobSupervisor, chat: ChatAnswerer,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The ``/v1`` routes, ``/healthz`` and the OpenAPI document over the given parts.

    ``lifespan`` starts and stops the parts; the caller that built them owns it.
    """
    app = FastAPI(
        title="Arkor control plane",
        version=SDK_VERSION,
        description=(
            "Deployments, API keys, projects and identities. Every /v1 route needs the "
            "`X-Arkor-Client: arkor/<version>` header; errors are `{\"error\": \"...\"}`."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.supervisor = supervisor
    app.state.chat = chat
    app.state.signup_limiter = SignupLimiter(settings.signup_per_hour)
    install_error_handlers(app)

    gated = [Depends(client_version_gate), Depends(refuse_unstorable_input)]
    for module in ROUTE_MODULES:
        app.include_router(module.router, dependencies=gated)
    roles.check_matrix(api_routes(), SCOPES)
    app.include_router(tls.router)  # the proxy's; not /v1, no client gate

    @app.get("/healthz", tags=["health"], summary="Liveness probe")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, minus the 422 it adds by default: validation errors here are 400."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    app.openapi_schema = schema
    return schema
