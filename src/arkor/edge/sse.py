"""Server-sent events as the edge writes them: ``data: <json>`` frames, OpenAI's
``data: [DONE]`` terminator (chat and completions), ``event:`` named frames (Responses), and
the error frame that ends a stream the engine broke off."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive

from arkor.edge.errors import WireError
from arkor.edge.serving import CLIENT_CLOSED_REQUEST, ClientGone, engine_error, while_connected
from arkor.engine.base import EngineError

log = logging.getLogger("arkor.edge")
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"


async def json_answer(receive: Receive, work: Awaitable[dict[str, Any]]) -> Response:
    """``work``'s body as JSON, or the unseen 499 when the client left before it was ready."""
    try:
        return JSONResponse(await while_connected(receive, work))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)


def stream(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream", headers=HEADERS)


def data(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def event(name: str, body: dict[str, Any]) -> bytes:
    return f"event: {name}\n".encode() + data(body)


def broken_off(exc: BaseException | None) -> WireError:
    """What ends a stream the engine broke off (``None``: it ended without finishing)."""
    if isinstance(exc, EngineError):
        log.warning("engine failed mid-stream: %s", exc)
        return engine_error(exc)
    return WireError(503, "The engine ended the request early", kind="server_error",
                     code="engine_error")


def error_frame(exc: BaseException | None) -> bytes:
    return data(broken_off(exc).body())
