"""The control plane behind the Studio: credentials, scope and HTTP, resolved per request.

Nothing is cached between requests: ``arkor login`` in another terminal, or a new
``.arkor/state.json``, takes effect on the next call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from starlette.responses import JSONResponse, Response, StreamingResponse

from arkor._version import SDK_VERSION
from arkor.sdk import (
    AnonymousCredentials,
    ApiConnectionError,
    AsyncCloudApiClient,
    CloudApiError,
    CredentialsError,
    OAuthCredentials,
    ProjectScope,
    ProjectState,
    aensure_credentials,
    aensure_project_state,
    default_arkor_cloud_api_url,
    read_credentials,
    read_state,
    usable_state,
)
from arkor.sdk._base import map_transport_error
from arkor.sdk._credentials import check_token_origin
from arkor.studio.config import StudioConfig

Creds = AnonymousCredentials | OAuthCredentials
DEPRECATION_HEADERS = ("deprecation", "warning", "sunset")
STREAM_TIMEOUT = httpx.Timeout(30.0, read=None)
NO_CREDENTIALS = "No credentials on file. Run `arkor login` first."


def error_response(exc: Exception) -> JSONResponse:
    """One place that turns a failure into the ``{"error": ...}`` the SPA shows."""
    if isinstance(exc, CredentialsError):
        return JSONResponse({"error": exc.message}, status_code=400)
    if isinstance(exc, ApiConnectionError):
        return JSONResponse({"error": exc.message}, status_code=502)
    if isinstance(exc, CloudApiError) and exc.status is not None:
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    return JSONResponse({"error": "Studio backend error"}, status_code=500)


def scope_of(state: ProjectState) -> ProjectScope:
    return ProjectScope(org_slug=state.org_slug, project_slug=state.project_slug)


class Upstream:
    def __init__(self, config: StudioConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http

    def base_url(self, credentials: Creds | None) -> str:
        return (self.config.cloud_url or default_arkor_cloud_api_url(credentials)).rstrip("/")

    def credentials(self) -> Creds | None:
        return read_credentials()

    async def ensure_credentials(self) -> Creds:
        """The credentials on file, or a fresh anonymous identity (saved) when there are none."""
        return await aensure_credentials(base_url=self.base_url(None))

    def state(self) -> ProjectState | None:
        return read_state(self.config.cwd)

    def usable_state(self, credentials: Creds) -> ProjectState | None:
        return usable_state(credentials, self.config.cwd)

    def client(self, credentials: Creds) -> AsyncCloudApiClient:
        return AsyncCloudApiClient(base_url=self.base_url(credentials), credentials=credentials)

    async def ensure_scope(self, credentials: Creds) -> ProjectScope:
        """Usable state, or (anonymous only) a new project for this directory: write paths."""
        async with self.client(credentials) as client:
            state = await aensure_project_state(client, credentials, self.config.cwd)
        return scope_of(state)

    def headers(self, credentials: Creds | None, extra: Mapping[str, str] | None = None
                ) -> dict[str, str]:
        headers = {"X-Arkor-Client": f"arkor/{SDK_VERSION}"}
        if credentials is not None:
            headers["Authorization"] = f"Bearer {credentials.bearer}"
        headers.update(extra or {})
        return headers

    async def _open(self, credentials: Creds | None, method: str, path: str, *,
                    params: Mapping[str, str] | None, content: bytes | None,
                    headers: Mapping[str, str] | None, stream: bool) -> httpx.Response:
        base = self.base_url(credentials)
        if credentials is not None:
            check_token_origin(credentials, base)
        request = self.http.build_request(
            method, base + path, params=params, content=content,
            headers=self.headers(credentials, headers),
            timeout=STREAM_TIMEOUT if stream else 30.0,
        )
        try:
            return await self.http.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, base) from exc

    async def forward(self, credentials: Creds | None, method: str, path: str, *,
                      params: Mapping[str, str] | None = None, content: bytes | None = None,
                      headers: Mapping[str, str] | None = None) -> Response:
        """The upstream answer as is: status, body, content type and deprecation headers."""
        response = await self._open(credentials, method, path, params=params, content=content,
                                    headers=headers, stream=False)
        out = _passthrough_headers(response, "application/json")
        return Response(response.content, status_code=response.status_code, headers=out)

    async def stream(self, credentials: Creds | None, method: str, path: str, *,
                     params: Mapping[str, str] | None = None, content: bytes | None = None,
                     headers: Mapping[str, str] | None = None,
                     default_type: str = "text/event-stream") -> Response:
        """Like :meth:`forward`, but the body is relayed chunk by chunk as it arrives."""
        response = await self._open(credentials, method, path, params=params, content=content,
                                    headers=headers, stream=True)
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
