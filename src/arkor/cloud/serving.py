"""How the app runs under uvicorn, for ``arkor cloud serve`` and ``arkor dev``'s embedded cloud.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``), open connections
(``limit_concurrency``; a request beyond it is answered 503) and shutdown
(``timeout_graceful_shutdown``: after it, requests still running are cancelled), but not the
time a client may take to send its request headers. :class:`HeaderTimeoutProtocol` adds that,
so a client that opens connections and trickles bytes into them (slowloris) cannot hold them.
It also closes lingeringly, as nginx and Apache do: a connection closed while the client is still
sending its request body (a 413 before the body is read) is half-closed after the answer, and
what the client goes on sending is read and dropped until it stops or :data:`LINGER_S` passes.
Closing with those bytes unread would reset the connection, and a reset can cost the client the
answer it had not read yet.
Body size and pauses in a body are the app's (:mod:`arkor.middleware.guards`); request lines are
:mod:`arkor.middleware.access_log`'s, not uvicorn's access log.
"""

from __future__ import annotations

import asyncio

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from arkor.cloud.settings import DEFAULT_HEADER_TIMEOUT_S, Settings

LINGER_S = 2.0


class _LingeringTransport:
    """The connection's transport, whose ``close`` lingers while the request body is unread."""

    def __init__(self, transport: asyncio.Transport, protocol: HeaderTimeoutProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.lingering = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        if self._protocol.conn.their_state is not h11.SEND_BODY \
                or not self._transport.can_write_eof():
            self._transport.close()
            return
        self.lingering = True
        self._transport.write_eof()  # the answer, then FIN
        self._transport.resume_reading()
        self._protocol.loop.call_later(LINGER_S, self._transport.close)


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete
    ``timeout_headers`` seconds after it opened, or after the first byte of its next request."""

    timeout_headers: float = DEFAULT_HEADER_TIMEOUT_S
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        lingering = _LingeringTransport(transport, self)
        super().connection_made(lingering)  # type: ignore[arg-type]
        self._start_header_timer()

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():  # lingering (or closing): the rest of a refused body
            return
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # a request's headers begun, not yet complete
            self._start_header_timer()
        else:
            self._stop_header_timer()

    def eof_received(self) -> bool | None:  # type: ignore[override]
        if isinstance(self.transport, _LingeringTransport) and self.transport.lingering:
            return False  # the client is done: close now
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.timeout_headers, self._headers_late)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def server_config(app: ASGIApp, settings: Settings, *, host: str, port: int) -> uvicorn.Config:
    protocol = type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,),
                    {"timeout_headers": float(settings.header_timeout_s)})
    return uvicorn.Config(
        app, host=host, port=port, lifespan="on", http=protocol,
        timeout_keep_alive=settings.keep_alive_s,
        limit_concurrency=settings.max_connections,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        forwarded_allow_ips=list(settings.trusted_proxies),
        log_config=None, access_log=False,
    )
