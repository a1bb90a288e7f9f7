"""The control-plane application: ``create_app(settings)`` builds everything, nothing at import."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from arkor._version import SDK_VERSION
from arkor.cloud.access_log import AccessLog
from arkor.cloud.errors import install_error_handlers
from arkor.cloud.files import prepare_data_dir
from arkor.cloud.guards import BodyGuard, HostGuard
from arkor.cloud.input_guard import refuse_unstorable_input
from arkor.cloud.routes import (
    auth,
    base_models,
    datasets,
    endpoints,
    inference,
    job_events,
    job_import,
    jobs,
    projects,
)
from arkor.cloud.settings import Settings
from arkor.cloud.supervisor import JobSupervisor
from arkor.cloud.version_gate import client_version_gate
from arkor.edge.app import EdgeApp
from arkor.edge.directory import DeploymentDirectory
from arkor.edge.keys import KeyUsage
from arkor.edge.routing import EdgeRouter
from arkor.edge.serving import EngineProvider, OutputLimits
from arkor.engine.base import Engine
from arkor.store.db import Database, migrate


def local_engine_factory(settings: Settings) -> Callable[[], Engine]:
    def build() -> Engine:
        from arkor.engine.local import LocalEngine

        return LocalEngine(
            settings.registry, models_dir=settings.models_dir,
            max_batch_size=settings.engine_max_batch, max_queue=settings.engine_max_queue,
            max_loaded_adapters=settings.engine_max_adapters,
        )

    return build


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """The control plane with the edge in front of it, on one ASGI app.

    ``engine`` replaces the local engine (made on first use otherwise).
    """
    prepare_data_dir(settings)
    db = Database(settings.db_url)
    migrate(db.engine)
    supervisor = JobSupervisor(db, settings)
    engines = EngineProvider(
        None if engine else local_engine_factory(settings), engine,
        limits=OutputLimits(settings.default_max_tokens, settings.max_tokens_cap),
    )
    usage = KeyUsage(db)
    edge = EdgeApp(DeploymentDirectory(db), usage, engines)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        db.listen_for_changes()
        supervisor.start()
        usage.start()
        try:
            yield
        finally:
            usage.stop()
            supervisor.stop()
            await engines.close()
            db.dispose()

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
    app.state.engines = engines
    app.state.edge = edge
    # The last added runs first: log, check the Host, bound the body, then route.
    app.add_middleware(EdgeRouter, edge=edge, edge_domain=settings.edge_domain)
    app.add_middleware(BodyGuard, settings=settings)
    app.add_middleware(HostGuard, settings=settings)
    app.add_middleware(AccessLog, edge_domain=settings.edge_domain)
    install_error_handlers(app)

    gated = [Depends(client_version_gate), Depends(refuse_unstorable_input)]
    for module in (auth, projects, endpoints, base_models, job_import, jobs, job_events,
                   datasets, inference):
        app.include_router(module.router, dependencies=gated)

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
