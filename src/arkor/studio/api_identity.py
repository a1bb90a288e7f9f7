"""``/api/credentials``, ``/api/me`` and ``/api/base-models``: who the Studio acts as."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arkor.sdk import AnonymousCredentials, TokenCredentials
from arkor.studio.upstream import Upstream


def upstream_of(request: Request) -> Upstream:
    return request.app.state.upstream  # type: ignore[no-any-return]


async def get_credentials(request: Request) -> Response:
    upstream = upstream_of(request)
    credentials = await upstream.ensure_credentials()
    state = upstream.usable_state(credentials)
    org_slug = state.org_slug if state else (
        credentials.org_slug if isinstance(credentials, AnonymousCredentials | TokenCredentials)
        else None)
    # Never the bearer token: the page does not need it, and a script running in the page
    # (an extension, an XSS) could take it off the machine.
    return JSONResponse({
        "mode": credentials.mode,
        "baseUrl": upstream.base_url(credentials),
        "orgSlug": org_slug,
        "projectSlug": state.project_slug if state else None,
    })


async def get_me(request: Request) -> Response:
    upstream = upstream_of(request)
    return await upstream.pass_through(await upstream.ensure_credentials(), "GET", "/v1/me")


async def get_base_models(request: Request) -> Response:
    upstream = upstream_of(request)
    return await upstream.pass_through(upstream.credentials(), "GET", "/v1/base-models")


routes = [
    Route("/api/credentials", get_credentials, methods=["GET"]),
    Route("/api/me", get_me, methods=["GET"]),
    Route("/api/base-models", get_base_models, methods=["GET"]),
]
