"""Loopback-only Host check, the per-launch token check and the browser's own defences, as
one ASGI middleware.

The Host check stops DNS-rebinding pages from reaching the server under a foreign name; the
token (read from a meta tag that only a same-origin page can see) stops cross-site requests.
Only :data:`OPEN_API_ROUTES` (``GET /api/status``, which answers no secret) skip the token;
the Host check applies to every request.
Every response, refusals included, carries :data:`SECURITY_HEADERS`: no framing (so no
clickjacking), a Content-Security-Policy that runs only the Studio's own files, no MIME
sniffing and no Referer.
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_HOST = re.compile(r"^(?:127\.0\.0\.1|localhost)(?::\d+)?$")
TOKEN_HEADER = b"x-arkor-studio-token"
EVENTS_PATH = re.compile(r"^/api/jobs/[^/]+/events$")
STATUS_PATH = "/api/status"
OPEN_API_ROUTES = frozenset({("GET", STATUS_PATH)})
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def token_matches(given: str | None, expected: str) -> bool:
    if given is None or len(given) != len(expected):
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


async def _refuse(send: Send, *, api: bool, message: str) -> None:
    if api:
        body = json.dumps({"error": message}).encode()
        content_type = b"application/json"
    else:
        body = message.encode()
        content_type = b"text/plain; charset=utf-8"
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", content_type),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _with_security_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            names = {name for name, _ in SECURITY_HEADERS}
            kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
            message = {**message, "headers": [*kept, *SECURITY_HEADERS]}
        await send(message)

    return sending


class StudioGuard:
    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self.app = app
        self.token = token

    def _token_from(self, scope: Scope) -> str | None:
        given = _header(scope, TOKEN_HEADER)
        if given is not None:
            return given
        if scope["method"] == "GET" and EVENTS_PATH.match(scope["path"]):
            query: dict[str, Any] = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            values = query.get("studioToken")
            return values[0] if values else None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send)
        api = scope["path"] == "/api" or scope["path"].startswith("/api/")
        host = _header(scope, b"host") or ""
        if not LOOPBACK_HOST.match(host):
            await _refuse(send, api=api,
                          message="Studio API is loopback-only" if api
                          else "Studio is loopback-only")
            return
        if api and (scope["method"], scope["path"]) not in OPEN_API_ROUTES \
                and not token_matches(self._token_from(scope), self.token):
            await _refuse(send, api=True, message="Missing or invalid studio token")
            return
        await self.app(scope, receive, send)
