"""The edge's one error: :class:`WireError`, answered in OpenAI's shape.

    WireError(status, message, param=, code=, kind=)
        400 invalid_request_error   a field the edge refuses (``param`` names it)
        401 authentication_error    a missing, malformed, unknown or revoked key
        404 invalid_request_error   an unknown deployment, model or route
        429 requests / tokens       over a rate limit (:mod:`arkor.edge.rate_limits`)
        429 rate_limit_error        the engine's queue is full (``Retry-After``)
        503 server_error            the model cannot load or the engine failed, or the
                                    rate-limit counters cannot be reached (``closed``)

The app (:mod:`arkor.edge.app`) turns every ``WireError`` into
``{"error": {"message", "type", "param", "code"}}``; anything else is a logged 500.
"""

from __future__ import annotations

from typing import Any


class WireError(Exception):
    """A request the edge refuses, in the OpenAI error shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}


def bad(message: str, param: str | None, code: str = "invalid_value") -> WireError:
    """A 400 naming ``param``."""
    return WireError(400, message, param=param, code=code)
