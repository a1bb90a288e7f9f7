"""The Studio's one conversion of exceptions into the ``{"error": ...}`` the SPA shows.

    CloudApiError       the upstream status; CredentialsError 400, ApiConnectionError 502
    ├── SignInRequired  401, nobody signed in where anonymous sign-up is off, or the token
    │                   refused: the message says how to sign in (studio/sign_in.py)
    └── AuthenticationError  401 from a typed call, answered as SignInRequired
    InvalidBody         400, a request body (or query) refused before any upstream call
    anything else       500 ``Studio backend unavailable`` (the server still logs it)
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from arkor.sdk import ApiConnectionError, AuthenticationError, CloudApiError, CredentialsError
from arkor.studio.guards import SECURITY_HEADERS


class InvalidBody(ValueError):
    """A request body or query the Studio refuses; the message says what to fix."""


class SignInRequired(CloudApiError):
    """The Studio cannot act for anyone until the user signs in (again) in a terminal."""

    def __init__(self, message: str) -> None:
        super().__init__(401, message)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def cloud_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CloudApiError)
    if isinstance(exc, AuthenticationError):
        return _answer(request.app.state.upstream.refused(exc))
    return _answer(exc)


def _answer(exc: CloudApiError) -> JSONResponse:
    status = (400 if isinstance(exc, CredentialsError)
              else 502 if isinstance(exc, ApiConnectionError) else exc.status)
    return _error(500, "Studio backend error") if status is None else _error(status, exc.message)


async def invalid_body(_request: Request, exc: Exception) -> JSONResponse:
    return _error(400, str(exc))


async def unexpected_error(_request: Request, _exc: Exception) -> JSONResponse:
    """Answered outside the guard, so it carries the security headers itself."""
    headers = {name.decode(): value.decode() for name, value in SECURITY_HEADERS}
    return _error(500, "Studio backend unavailable", headers)


EXCEPTION_HANDLERS = {
    CloudApiError: cloud_api_error,
    InvalidBody: invalid_body,
    Exception: unexpected_error,
}
