"""``create_studio_app(config)``: the Studio's Starlette app (API, static UI, guards)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arkor.studio import (
    api_deployments,
    api_domains,
    api_identity,
    api_inference,
    api_jobs,
    api_runs,
    api_status,
    api_training,
    api_usage,
    contract_js,
)
from arkor.studio.config import StudioConfig
from arkor.studio.errors import EXCEPTION_HANDLERS
from arkor.studio.guards import StudioGuard
from arkor.studio.static_files import StaticFiles
from arkor.studio.upstream import SharedPool, Upstream


async def unknown_api_route(request: Request) -> Response:
    return JSONResponse({"error": f"No Studio API route for {request.method} {request.url.path}"},
                        status_code=404)


def create_studio_app(config: StudioConfig) -> Starlette:
    static = StaticFiles(config.static_dir, config.token)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = SharedPool()
        app.state.upstream = Upstream(config, pool)
        try:
            yield
        finally:
            await pool.shutdown()

    routes = [
        *api_status.routes,
        *api_identity.routes,
        *api_jobs.routes,
        *api_training.routes,
        *api_inference.routes,
        *api_deployments.routes,
        *api_runs.routes,
        *api_usage.routes,
        *api_domains.routes,
        Route("/api/{rest:path}", unknown_api_route,
              methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
        Route(contract_js.PATH, contract_js.serve, methods=["GET", "HEAD"]),
        Route("/{path:path}", static.serve, methods=["GET", "HEAD"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS,
                    middleware=[Middleware(StudioGuard, token=config.token)])
    app.state.config = config
    return app
