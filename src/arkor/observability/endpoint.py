"""Where ``GET /metrics`` is served, for the operator only.

- ``ARKOR_METRICS_PORT`` set: a listener of its own on ``ARKOR_METRICS_HOST`` (default
  127.0.0.1) serving ``/metrics`` and nothing else (:class:`MetricsListener`); the main port
  serves no ``/metrics``.
- Else ``ARKOR_METRICS_TOKEN`` set: ``/metrics`` on the main app (:func:`serve_on`).
- Neither: ``/metrics`` is not served anywhere (404), and nothing is counted.

Wherever it is served, a set ``ARKOR_METRICS_TOKEN`` is required as ``Authorization: Bearer``
(compared in constant time; 401 otherwise). The registry is collected on a worker thread, since
collecting reads the database.
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading
from collections.abc import Awaitable, Callable

import uvicorn
from fastapi import FastAPI
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arkor.cloud.serving import server_config
from arkor.cloud.settings import Settings
from arkor.middleware.guards import HostGuard
from arkor.observability.metrics import Metrics

log = logging.getLogger("arkor.metrics")
PATH = "/metrics"
UNAUTHORIZED = ("GET /metrics needs the operator's token: send 'Authorization: Bearer "
                "<ARKOR_METRICS_TOKEN>' (in a Prometheus scrape config: authorization, "
                "credentials_file).")


def bearer_matches(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


def metrics_endpoint(metrics: Metrics, token: str | None
                     ) -> Callable[[Request], Awaitable[Response]]:
    """The handler: the registry in the format Prometheus asks for (text or OpenMetrics)."""

    async def serve_metrics(request: Request) -> Response:
        if token is not None and not bearer_matches(request.headers.get("authorization"),
                                                    token):
            return JSONResponse({"error": UNAUTHORIZED}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="arkor-metrics"'})
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await run_in_threadpool(encoder, metrics.registry)
        return Response(body, headers={"Content-Type": content_type,
                                       "Cache-Control": "no-store"})

    return serve_metrics


def serve_on(app: FastAPI, metrics: Metrics, settings: Settings) -> None:
    """``GET /metrics`` on the main app, when only the token is set."""
    if settings.metrics_token and not settings.metrics_port:
        app.add_route(PATH, metrics_endpoint(metrics, settings.metrics_token),
                      methods=["GET"], include_in_schema=False)


class MetricsListener:
    """``GET /metrics`` alone on the operator's port: uvicorn on a thread of its own, so a
    scrape never waits for the main loop and the main server keeps its signal handling. The
    Host check and connection limits are the main server's."""

    def __init__(self, metrics: Metrics, settings: Settings) -> None:
        self.host, self.port = settings.metrics_host, settings.metrics_port
        app = Starlette(routes=[Route(PATH, metrics_endpoint(metrics, settings.metrics_token),
                                      methods=["GET"])])
        self._config = server_config(HostGuard(app, settings=settings), settings,
                                     host=self.host, port=self.port)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind now, so a port in use stops the server's start with a message that says so."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            sock = socket.create_server((self.host, self.port), family=family)
        except OSError as exc:
            raise OSError(f"Could not listen for /metrics on {self.host}:{self.port}: {exc}. "
                          "Choose another ARKOR_METRICS_PORT (or ARKOR_METRICS_HOST).") from exc
        self._server = uvicorn.Server(self._config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="arkor-metrics", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d%s", self.host, self.port, PATH)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
