"""Reject NUL characters anywhere in a request before it reaches the database.

PostgreSQL text columns cannot hold U+0000 and SQLite truncates at it in places; rather than
let a lookup fail with a driver error, the request is refused with a 400 that says why.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from fastapi import Request

from arkor.cloud.errors import ApiError

_NUL_IN_JSON = (b"\x00", b"\\u0000")


async def reject_nul_characters(request: Request) -> None:
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
