"""Refuse request input the database (or anything after it) cannot hold, before it gets there.

- NUL characters anywhere (URL or JSON body): PostgreSQL text columns cannot hold U+0000 and
  SQLite truncates at it in places.
- A JSON body deeper than ``MAX_JSON_DEPTH`` or holding a lone UTF-16 surrogate
  (:mod:`arkor.json_input`): psycopg cannot encode the one, pydantic's serializer and the
  JSON columns give up on the other. FastAPI parses the body before this dependency runs (a
  body too deep even to parse is its 400, see ``errors.py``); the parsed value is walked here.

Each is a 400 that says why, rather than a driver error later.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from fastapi import Request

from arkor import json_input
from arkor.cloud.errors import ApiError

_NUL_IN_JSON = (b"\x00", b"\\u0000")


async def refuse_unstorable_input(request: Request) -> None:
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    if b"\x00" in unquote_to_bytes(raw_path) or b"\x00" in unquote_to_bytes(query):
        raise ApiError(400, "The URL contains a NUL character, which is not allowed")
    content_type = request.headers.get("content-type", "")
    if "json" not in content_type or "ndjson" in content_type:
        return  # uploads are files on disk, never database text; multipart fields are checked
    body = await request.body()
    if any(marker in body for marker in _NUL_IN_JSON):
        raise ApiError(400, "The request body contains a NUL character, which is not allowed")
    try:
        parsed = await request.json()
    except (ValueError, RecursionError):
        return  # the route reads no body, or FastAPI has already refused it
    try:
        json_input.check(parsed)
    except json_input.JsonInputError as exc:
        raise ApiError(400, exc.message) from None
