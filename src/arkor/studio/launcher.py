"""Serving the Studio: uvicorn on a bound loopback socket, the token and session files, the
ready line."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import uvicorn

from arkor.studio.config import StudioConfig
from arkor.studio.ports import studio_url
from arkor.studio.server import create_studio_app
from arkor.studio.session_file import StudioSession, remove_session, write_session
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
                 on_ready: Callable[[str, StudioSession | None], None],
                 on_exit: Callable[[], Any], session_file: bool = True) -> None:
    """Serve until stopped. Once listening: the token file, then (with ``session_file``) this
    launch's ``.arkor/agent`` session file, then ``on_ready(url, session)``. Both are removed
    when the server shuts down (an exit, SIGINT or SIGTERM); the session file also when
    serving fails."""
    port = sock.getsockname()[1]
    url = config.url or studio_url(port)
    sessions: list[StudioSession] = []

    def ready() -> None:
        write_studio_token(config.token)
        if session_file:
            sessions.append(write_session(config.cwd, token=config.token, url=url, port=port))
        on_ready(url, sessions[0] if sessions else None)

    def forget_session() -> None:
        for session in sessions:
            remove_session(session)

    def done() -> None:
        forget_session()
        remove_studio_token(config.token)
        on_exit()

    app = create_studio_app(config)
    server = StudioServer(uvicorn.Config(app, log_level="warning", lifespan="on"),
                          on_ready=ready, on_exit=done)
    try:
        server.run(sockets=[sock])
    finally:
        forget_session()
