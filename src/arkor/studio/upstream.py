"""The control plane behind the Studio: credentials, scope and an SDK client, resolved per
request.

Nothing is cached between requests: ``arkor login`` in another terminal, or a new
``.arkor/state.json``, takes effect on the next call. Every call is the SDK's own (its
headers, token-origin check and error mapping); all of them share one :class:`SharedPool`.
A 401 from the control plane becomes :class:`SignInRequired` saying how to sign in again;
the credentials are left as they are (see studio/sign_in.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.responses import Response, StreamingResponse

from arkor.sdk import (
    AnyCredentials,
    AsyncCloudApiClient,
    AuthenticationError,
    CloudApiError,
    PermissionDeniedError,
    ProjectScope,
    ProjectState,
    aensure_credentials,
    aensure_project_state,
    default_arkor_cloud_api_url,
    read_credentials,
    read_state,
    usable_state,
)
from arkor.sdk.pool import POOL_LIMITS
from arkor.studio.config import StudioConfig
from arkor.studio.errors import SignInRequired
from arkor.studio.sign_in import not_signed_in, token_refused

Creds = AnyCredentials
DEPRECATION_HEADERS = ("deprecation", "warning", "sunset")


def scope_of(state: ProjectState) -> ProjectScope:
    return ProjectScope(org_slug=state.org_slug, project_slug=state.project_slug)


class SharedPool(httpx.AsyncHTTPTransport):
    """One connection pool under every request's client; the app's lifespan closes it with
    :meth:`shutdown`. Idle connections are dropped as the SDK's own are (``POOL_LIMITS``)."""

    def __init__(self) -> None:
        super().__init__(limits=POOL_LIMITS)

    async def aclose(self) -> None:
        """Closing a request's client leaves the pool open."""

    async def shutdown(self) -> None:
        await super().aclose()


class Upstream:
    def __init__(self, config: StudioConfig, transport: httpx.AsyncBaseTransport) -> None:
        self.config = config
        self.transport = transport

    def base_url(self, credentials: Creds | None) -> str:
        return (self.config.cloud_url or default_arkor_cloud_api_url(credentials)).rstrip("/")

    def credentials(self) -> Creds | None:
        return read_credentials()

    async def ensure_credentials(self) -> Creds:
        """``ARKOR_TOKEN`` or the credentials on file, or a fresh anonymous identity (saved)
        when there are none; where the control plane signs nobody up anonymously,
        :class:`SignInRequired` saying how to sign in instead."""
        url = self.base_url(None)
        try:
            return await aensure_credentials(base_url=url, transport=self.transport)
        except PermissionDeniedError as refused:
            async with self.client(None) as client:
                policy = (await client.get_cli_auth_config()).signup
            message = not_signed_in(policy, url)
            if message is None:
                raise
            raise SignInRequired(message) from refused

    def sign_in_again(self, credentials: Creds) -> SignInRequired:
        """The control plane refused ``credentials`` (401): how to replace them."""
        return SignInRequired(token_refused(self.base_url(credentials)))

    def refused(self, error: AuthenticationError) -> CloudApiError:
        """A typed call's 401: :meth:`sign_in_again` for the credentials the Studio holds;
        without credentials, the control plane's own message."""
        credentials = self.credentials()
        return error if credentials is None else self.sign_in_again(credentials)

    def state(self) -> ProjectState | None:
        return read_state(self.config.cwd)

    def usable_state(self, credentials: Creds) -> ProjectState | None:
        return usable_state(credentials, self.config.cwd)

    def client(self, credentials: Creds | None) -> AsyncCloudApiClient:
        """Warns with ``TokenOriginWarning`` when the credentials come from another cloud."""
        return AsyncCloudApiClient(base_url=self.base_url(credentials), credentials=credentials,
                                   transport=self.transport)

    async def ensure_scope(self, credentials: Creds) -> ProjectScope:
        """Usable state, or (anonymous only) a new project for this directory: write paths."""
        async with self.client(credentials) as client:
            state = await aensure_project_state(client, credentials, self.config.cwd)
        return scope_of(state)

    async def pass_through(self, credentials: Creds | None, method: str, path: str,
                           **options: Any) -> Response:
        """The upstream answer as is: status, body, content type and deprecation headers."""
        async with self.client(credentials) as client:
            response = await client.forward(method, path, **options)
        if response.status_code == 401 and credentials is not None:
            raise self.sign_in_again(credentials)
        out = _passthrough_headers(response, "application/json")
        return Response(response.content, status_code=response.status_code, headers=out)

    async def relay(self, credentials: Creds | None, method: str, path: str, *,
                    default_type: str = "text/event-stream", **options: Any) -> Response:
        """Like :meth:`pass_through`, but the body is relayed chunk by chunk as it arrives."""
        client = self.client(credentials)
        response = await client.forward(method, path, stream=True, **options)
        if response.status_code == 401 and credentials is not None:
            await response.aclose()
            await client.aclose()
            raise self.sign_in_again(credentials)
        out = _passthrough_headers(response, default_type)
        out["cache-control"] = "no-cache, no-transform"
        out["x-accel-buffering"] = "no"

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_bytes():
                    yield chunk
            except httpx.HTTPError:
                return
            finally:
                await response.aclose()
                await client.aclose()

        return StreamingResponse(body(), status_code=response.status_code, headers=out)


def _passthrough_headers(response: httpx.Response, default_type: str) -> dict[str, str]:
    out = {"content-type": response.headers.get("content-type", default_type)}
    for name in DEPRECATION_HEADERS:
        if name in response.headers:
            out[name] = response.headers[name]
    return out


def wire(value: Any) -> Any:
    """SDK models back to their camelCase wire form, lists included."""
    if isinstance(value, list):
        return [wire(v) for v in value]
    return value.to_wire() if hasattr(value, "to_wire") else value
