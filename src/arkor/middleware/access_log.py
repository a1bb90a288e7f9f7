"""One log line per request (logger ``arkor.access``), and the log output of ``arkor cloud serve``.

A line holds: method, path (never the query string, which may carry a token), status,
duration_ms, client, request_id (the answer's ``x-request-id``: the edge's, or one set here)
and, on edge requests, the deployment and the public prefix of a well-formed key (what the
product shows beside the key; never the key). Nothing else of the request is read: no other
header, no body.

``ARKOR_LOG_FORMAT=text`` writes ``key=value`` pairs after the time, level and logger;
``json`` writes one object per line with the same fields (other loggers: ``message``).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import IO, Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arkor.edge.keys import presented_key
from arkor.edge.routing import request_slug
from arkor.store.deployment_keys import DISPLAY_PREFIX_CHARS, is_well_formed

log = logging.getLogger("arkor.access")
FIELDS = "arkor_fields"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CLIENT_CLOSED = 499
_CALLER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BARE = re.compile(r"^[A-Za-z0-9._:/@+-]+$")


def key_prefix(scope: Scope) -> str | None:
    key = presented_key(Headers(scope=scope))
    return key[:DISPLAY_PREFIX_CHARS] if key and is_well_formed(key) else None


def logfmt(fields: dict[str, Any]) -> str:
    return " ".join(f"{name}={value if _BARE.match(str(value)) else json.dumps(str(value))}"
                    for name, value in fields.items())


class AccessLog:
    def __init__(self, app: ASGIApp, *, edge_domain: str) -> None:
        self.app = app
        self.edge_domain = edge_domain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        answer: dict[str, Any] = {}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "x-request-id" not in headers:
                    caller = Headers(scope=scope).get("x-request-id", "")
                    headers["x-request-id"] = (caller if _CALLER_ID.match(caller)
                                               else f"req_{uuid.uuid4().hex}")
                answer.update(status=message["status"], request_id=headers["x-request-id"])
            await send(message)

        failed = False
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            failed = True
            raise
        finally:
            self.write(scope, answer, failed, began)

    def write(self, scope: Scope, answer: dict[str, Any], failed: bool, began: float) -> None:
        client = scope.get("client")
        fields: dict[str, Any] = {
            "method": scope["method"], "path": scope["path"],
            "status": answer.get("status", 500 if failed else CLIENT_CLOSED),
            "duration_ms": round((time.perf_counter() - began) * 1000, 1),
            "client": client[0] if client else "-",
            "request_id": answer.get("request_id", "-"),
        }
        slug = request_slug(scope, self.edge_domain)
        if slug is not None:
            fields["deployment"] = slug
            prefix = key_prefix(scope)
            if prefix:
                fields["key_prefix"] = prefix
        log.info("%s", logfmt(fields), extra={FIELDS: fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name,
        }
        fields = getattr(record, FIELDS, None)
        body.update(fields if isinstance(fields, dict) else {"message": record.getMessage()})
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def log_handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(*, log_format: str, level: str) -> None:
    """Every logger (uvicorn's too) to stderr in ``log_format``, from ``level`` up."""
    logging.basicConfig(level=level, handlers=[log_handler(log_format)], force=True)
