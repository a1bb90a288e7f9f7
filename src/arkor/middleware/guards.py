"""What a request must pass before the app sees it: an allowed Host, then a body of bounded
size that arrives in time.

Both wrap the whole app, edge included, and answer by themselves (then close the
connection): OpenAI's error shape on edge requests, ``{"error"}`` elsewhere.

Host (DNS rebinding: a page on ``evil.example`` whose name now resolves to 127.0.0.1 must not
reach a loopback server): served are loopback names (``localhost``, ``*.localhost``), IP
literals (rebinding needs a domain name, and servers reached by address must work), the edge
domain and its subdomains, verified custom domains (marked by :mod:`arkor.edge.domains`) and
``ARKOR_ALLOWED_HOSTS``. Anything else is 403; no Host on HTTP/1.1 is 400.

Body: a ``Content-Length`` over the limit is 413 before a byte is read; otherwise bytes are
counted as they arrive (413 the moment they pass the limit), and each chunk must come within
``body_timeout_s`` of the last (else 408). Ordinary bodies (``max_body_kb``: JSON, chat
requests) are read whole before the app runs; the upload routes (``max_upload_mb``) stream
through to the app.
"""

from __future__ import annotations

import asyncio
import ipaddress

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arkor.cloud.settings import Settings
from arkor.edge.openai_wire import WireError
from arkor.edge.routing import HOST_SLUG, request_slug

UPLOAD_ROUTES = frozenset({("POST", "/v1/datasets"), ("POST", "/v1/jobs/import")})


async def refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str, *,
                 edge: bool, code: str) -> None:
    """Answer for the app and close the connection (a body left unread stays unread)."""
    body = WireError(status, message, code=code).body() if edge else {"error": message}
    response = JSONResponse(body, status_code=status, headers={"Connection": "close"})
    await response(scope, receive, send)


def host_name(host: str) -> str:
    """``Example.COM:8080`` → ``example.com``; ``[::1]:8787`` → ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0].rstrip(".") if ":" in host else host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    except ValueError:
        return False
    return True


def host_allowed(name: str, *, edge_domain: str, allowed: tuple[str, ...]) -> bool:
    edge_domain = edge_domain.lower().strip(".")
    if name in ("localhost", edge_domain) or "*" in allowed or name in allowed or _is_ip(name):
        return True
    suffixes = (".localhost", "." + edge_domain,
                *(pattern[1:] for pattern in allowed if pattern.startswith("*.")))
    return name.endswith(suffixes)


class HostGuard:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.edge_domain = settings.edge_domain
        self.allowed = settings.allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if host is None and scope.get("http_version") != "1.0":
            status, message, code = 400, "The Host header is required", "missing_host"
        elif host is not None and HOST_SLUG not in scope and not host_allowed(
                host_name(host), edge_domain=self.edge_domain, allowed=self.allowed):
            status, code = 403, "host_not_allowed"
            message = (f"This server does not answer to the name {host_name(host)!r}. To serve "
                       "it, add it to ARKOR_ALLOWED_HOSTS (comma-separated; *.example.com for "
                       "subdomains).")
        else:
            await self.app(scope, receive, send)
            return
        await refuse(scope, receive, send, status, message, code=code,
                     edge=request_slug(scope, self.edge_domain) is not None)


class BodyRefused(Exception):
    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class _Body:
    """The request body as it arrives: counted, and each chunk on a deadline."""

    def __init__(self, receive: Receive, *, limit: int, timeout: float, too_large: str) -> None:
        self.receive = receive
        self.limit = limit
        self.timeout = timeout
        self.too_large = too_large
        self.size = 0
        self.done = False

    def check_length(self, scope: Scope) -> None:
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            raise BodyRefused(413, self.too_large, "request_too_large")

    async def next(self) -> Message:
        if self.done:  # afterwards the app waits for a disconnect, for as long as it likes
            return await self.receive()
        try:
            async with asyncio.timeout(self.timeout):
                message = await self.receive()
        except TimeoutError:
            raise BodyRefused(408, f"The request body stalled: nothing arrived for "
                                   f"{self.timeout:g} s (ARKOR_BODY_TIMEOUT_S)",
                              "request_timeout") from None
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                raise BodyRefused(413, self.too_large, "request_too_large")
            self.done = not message.get("more_body", False)
        return message

    async def read_all(self) -> Message:
        """The whole body as one message, or the disconnect that cut it short."""
        chunks = []
        while True:
            message = await self.next()
            if message["type"] != "http.request":
                return message
            chunks.append(message.get("body", b""))
            if self.done:
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}


class BodyGuard:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.edge_domain = settings.edge_domain
        self.timeout = settings.body_timeout_s
        self.body_limit = settings.max_body_kb * 1024
        self.upload_limit = settings.max_upload_mb * 1024 * 1024
        self.too_large = (f"The request body is over the {settings.max_body_kb} KiB limit "
                          "(ARKOR_MAX_BODY_KB)")
        self.upload_too_large = (f"The upload is over the {settings.max_upload_mb} MB limit "
                                 "(ARKOR_MAX_UPLOAD_MB)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        edge = request_slug(scope, self.edge_domain) is not None
        upload = not edge and (scope["method"], scope["path"]) in UPLOAD_ROUTES
        body = _Body(receive, limit=self.upload_limit if upload else self.body_limit,
                     timeout=self.timeout,
                     too_large=self.upload_too_large if upload else self.too_large)
        try:
            body.check_length(scope)
            first = None if upload else await body.read_all()
        except BodyRefused as exc:
            await refuse(scope, receive, send, exc.status, exc.message, edge=edge, code=exc.code)
            return
        if first is None:
            await self._stream(scope, body, send, edge=edge)
        elif first["type"] == "http.request":  # else the client left: nobody to answer
            pending = [first]

            async def replay() -> Message:
                return pending.pop() if pending else await receive()

            await self.app(scope, replay, send)

    async def _stream(self, scope: Scope, body: _Body, send: Send, *, edge: bool) -> None:
        """Upload bodies go to the app as they come; a refusal answers in the app's place,
        and the app, told the client left, is not heard from again."""
        started = answered = False

        async def receive() -> Message:
            nonlocal answered
            if answered:
                return {"type": "http.disconnect"}
            try:
                return await body.next()
            except BodyRefused as exc:
                if not started:
                    await refuse(scope, body.receive, send, exc.status, exc.message, edge=edge,
                                 code=exc.code)
                    answered = True
                return {"type": "http.disconnect"}

        async def send_unless_answered(message: Message) -> None:
            nonlocal started
            if not answered:
                started = started or message["type"] == "http.response.start"
                await send(message)

        try:
            await self.app(scope, receive, send_unless_answered)
        except Exception:
            if not answered:
                raise
