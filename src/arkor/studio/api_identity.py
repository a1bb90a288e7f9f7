"""``/api/credentials``, ``/api/me`` and ``/api/base-models``: who the Studio acts as."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arkor.sdk import OAuthCredentials
from arkor.studio.upstream import Creds, Upstream


def upstream_of(request: Request) -> Upstream:
    return request.app.state.upstream  # type: ignore[no-any-return]


async def get_credentials(request: Request) -> Response:
    upstream = upstream_of(request)
    credentials = await upstream.ensure_credentials()
    state = upstream.usable_state(credentials)
    # Never the bearer token: the page does not need it, and a script running in the page
    # (an extension, an XSS) could take it off the machine.
    return JSONResponse({
        "mode": credentials.mode,
        "baseUrl": upstream.base_url(credentials),
        "orgSlug": state.org_slug if state else await _home_org(upstream, credentials),
        "projectSlug": state.project_slug if state else None,
    })


async def _home_org(upstream: Upstream, credentials: Creds) -> str | None:
    """The org a project for this directory would be set up in: the one signed in to; for a
    token without one recorded (``ARKOR_TOKEN``), its first org, as the SDK's bootstrap and
    ``arkor login --token`` pick it."""
    if isinstance(credentials, OAuthCredentials):
        return None
    if credentials.org_slug is not None:
        return credentials.org_slug
    async with upstream.client(credentials) as client:
        me = await client.get_me()
    return me.orgs[0].slug if me.orgs else None


async def get_me(request: Request) -> Response:
    upstream = upstream_of(request)
    return await upstream.pass_through(await upstream.ensure_credentials(), "GET", "/v1/me")


async def get_base_models(request: Request) -> Response:
    upstream = upstream_of(request)
    return await upstream.pass_through(await upstream.ensure_credentials(), "GET",
                                       "/v1/base-models")


routes = [
    Route("/api/credentials", get_credentials, methods=["GET"]),
    Route("/api/me", get_me, methods=["GET"]),
    Route("/api/base-models", get_base_models, methods=["GET"]),
]
