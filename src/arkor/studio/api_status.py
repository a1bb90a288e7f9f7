"""``GET /api/status``: whether a Studio answers here, and where its parts are.

The one ``/api/*`` route that needs no Studio token (the Host guard still applies), so a tool
that found a session file can check the Studio is alive before trusting it. It answers
addresses only, never a credential or the token.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arkor._version import SDK_VERSION
from arkor.studio.config import StudioConfig
from arkor.studio.guards import STATUS_PATH
from arkor.studio.upstream import Upstream


def without_userinfo(url: str) -> str:
    """``url`` without a ``user:password@`` part, which a configured URL may carry."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


async def get_status(request: Request) -> Response:
    config: StudioConfig = request.app.state.config
    upstream: Upstream = request.app.state.upstream
    studio = config.url or str(request.base_url).rstrip("/")
    endpoints = {"studio": studio,
                 "cloud": without_userinfo(upstream.base_url(upstream.credentials()))}
    if config.edge_url is not None:
        endpoints["edge"] = without_userinfo(config.edge_url)
    return JSONResponse({
        "status": "ok",
        "version": SDK_VERSION,
        "mode": config.mode,
        "url": studio,
        "pid": os.getpid(),
        "cwd": str(config.cwd),
        "endpoints": endpoints,
    })


routes = [Route(STATUS_PATH, get_status, methods=["GET"])]
