"""Serving the Studio: uvicorn on a bound loopback socket, the token file, the ready line."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import uvicorn

from arkor.studio.config import StudioConfig
from arkor.studio.server import create_studio_app
from arkor.studio.token_file import remove_studio_token, write_studio_token


class StudioServer(uvicorn.Server):
    """uvicorn with hooks: ``on_ready`` once listening, ``on_exit`` after shutting down
    (before uvicorn re-raises a captured signal, so cleanup runs even on SIGTERM)."""

    def __init__(self, config: uvicorn.Config, *, on_ready: Callable[[], None],
                 on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._on_exit = on_exit

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets=sockets)
        finally:
            self._on_exit()


def serve_studio(config: StudioConfig, sock: socket.socket, *,
                 on_ready: Callable[[str], None], on_exit: Callable[[], Any]) -> None:
    port = sock.getsockname()[1]
    url = f"http://localhost:{port}"

    def ready() -> None:
        write_studio_token(config.token)
        on_ready(url)

    def done() -> None:
        remove_studio_token(config.token)
        on_exit()

    app = create_studio_app(config)
    server = StudioServer(uvicorn.Config(app, log_level="warning", lifespan="on"),
                          on_ready=ready, on_exit=done)
    server.run(sockets=[sock])
