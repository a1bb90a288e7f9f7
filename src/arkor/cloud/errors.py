"""The control plane's one error shape, ``{"error": "<message>"}``, and its handlers.

    ApiError(status, message)      raised by routes and dependencies
    RequestValidationError  -> 400 with the field named
    HTTPException (404/405) -> same status, same shape (a body too deep to parse: 400)
    SlugTaken, EmailTaken   -> 409
    store Refused           -> its status (400, 403, 404, 409)
    targets.NotFound        -> 404, targets.NotServable -> 400
    ClientTooOld            -> 426 with the supported range and the upgrade command
    anything else           -> 500 "Internal server error" (details only in the log)
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from arkor.cloud.deps import get_settings
from arkor.cloud.version_gate import CLIENT_HEADER, ClientTooOld, check_client_version
from arkor.json_input import TOO_DEEP
from arkor.store.errors import EmailTaken, Refused, SlugTaken
from arkor.targets import NotFound, TargetError

log = logging.getLogger("arkor.cloud")


class ErrorBody(BaseModel):
    error: str


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.extra = extra


def error_response(status: int, message: str, *, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    # A message may quote the caller's input; a lone surrogate in it must not make a 500.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def describe_validation_error(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        where = loc[0] if loc and loc[0] in ("query", "path", "header") else None
        field = ".".join(loc[1:] if where else loc)
        ctx_error = (err.get("ctx") or {}).get("error")
        message = str(ctx_error) if ctx_error else str(err.get("msg", "is invalid"))
        if err.get("type") == "missing":
            parts.append(f"{field} is required" if field else "a request body is required")
        elif err.get("type") == "json_invalid":
            parts.append("The request body is not valid JSON")
        elif field and not message.startswith(field.rsplit(".", 1)[-1]):
            parts.append(f"{field}: {message}")
        else:
            parts.append(message)
    return "; ".join(parts) or "Invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, headers=exc.headers, **exc.extra)

    @app.exception_handler(ClientTooOld)
    async def _client_too_old(_request: Request, exc: ClientTooOld) -> JSONResponse:
        return error_response(426, str(exc), **exc.body)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A body that fails to parse is rejected before dependencies run; the version gate
        # still comes first, so an old client learns it must upgrade.
        if request.url.path.startswith("/v1/"):
            try:
                check_client_version(request.headers.get(CLIENT_HEADER),
                                     get_settings(request).min_client_version)
            except ClientTooOld as gate:
                return await _client_too_old(request, gate)
        return error_response(400, describe_validation_error(exc))

    @app.exception_handler(SlugTaken)
    async def _slug_taken(_request: Request, exc: SlugTaken) -> JSONResponse:
        return error_response(409, f"{exc.what} slug is already taken")

    @app.exception_handler(EmailTaken)
    async def _email_taken(_request: Request, exc: EmailTaken) -> JSONResponse:
        return error_response(409, str(exc))

    @app.exception_handler(Refused)
    async def _refused(_request: Request, exc: Refused) -> JSONResponse:
        return error_response(exc.status, exc.message)

    @app.exception_handler(TargetError)
    async def _target(_request: Request, exc: TargetError) -> JSONResponse:
        return error_response(404 if isinstance(exc, NotFound) else 400, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: "Not found", 405: "Method not allowed"}
        detail = exc.detail if isinstance(exc.detail, str) else None
        if isinstance(exc.__cause__, RecursionError):  # FastAPI's JSON parse gave up
            detail = TOO_DEEP
        message = messages.get(exc.status_code, detail or "Request failed")
        return JSONResponse(
            {"error": message}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "Internal server error")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Invalid request; the message names the field",
        401: "Missing or invalid bearer token",
        403: "Not a member of that org, or a role below the one this route needs",
        404: "Not found in this scope",
        409: "Conflict (slug, email or custom domain taken)",
        429: "Too many attempts; wait the Retry-After seconds",
        426: "Client too old or X-Arkor-Client header missing/malformed",
        502: "An upstream lookup (DNS) failed or timed out; try again shortly",
    }.items()
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: ERROR_RESPONSES[s] for s in statuses}
