"""OpenAI's stored completions on a deployment, read from its stored runs.

A chat completion made with ``store: true`` (and a response, unless ``store: false``: the
Responses API's default) is kept as a run marked stored, under the deployment's run retention;
with retention ``disabled`` an explicit ``store: true`` is refused with 400 (nothing can be
kept), and a response is answered with ``store: false``. Then, with the deployment's key:

- ``GET /v1/chat/completions`` (``after``, ``limit`` 1-100 (20), ``order`` asc|desc (asc),
  ``metadata[KEY]=VALUE`` filters), ``GET /v1/chat/completions/{id}``,
  ``POST /v1/chat/completions/{id}`` (``{"metadata": {...}}`` replaces it),
  ``DELETE /v1/chat/completions/{id}``, ``GET /v1/chat/completions/{id}/messages``;
- ``GET /v1/responses/{id}``.

Only completed calls are listed; ids are the answers' own (``chatcmpl-…``, ``resp_…``). Runs
not yet written by the recorder are written first, so a call can be read back at once. A key
opens only its own deployment's runs.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from arkor.edge.directory import ServedDeployment
from arkor.edge.errors import WireError
from arkor.edge.runs import Recorder
from arkor.store import runs as stored
from arkor.store.db import Database
from arkor.store.tables import Run

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
MAX_METADATA_KEYS = 16
MAX_KEY_CHARS, MAX_VALUE_CHARS = 64, 512
DEFAULT_LIMIT, MAX_LIMIT = 20, 100


def is_stored_route(path: str, method: str) -> bool:
    return (path == CHAT and method == "GET") or path.startswith(CHAT + "/") or (
        path.startswith(RESPONSES + "/"))


def check_metadata(value: Any) -> dict[str, str]:
    """OpenAI's metadata: up to 16 string keys (64 characters) with string values (512)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_METADATA_KEYS or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= MAX_KEY_CHARS
            and len(v) <= MAX_VALUE_CHARS for k, v in value.items()):
        raise WireError(400, f"metadata must be an object of at most {MAX_METADATA_KEYS} "
                             f"string keys (up to {MAX_KEY_CHARS} characters) with string "
                             f"values (up to {MAX_VALUE_CHARS})", param="metadata",
                        code="invalid_metadata")
    return dict(value)


def prepare(served: ServedDeployment, path: str, body: dict[str, Any]) -> None:
    """Refuse what cannot be stored; a response on a deployment that keeps nothing says so."""
    if "metadata" in body:
        check_metadata(body["metadata"])
    if served.run_retention_mode != "disabled":
        return
    if body.get("store") is True:
        raise WireError(400, "store: true cannot be honoured: this deployment keeps no runs "
                             "(its run retention is disabled). Send store: false, or ask its "
                             "owner to keep runs (runRetentionMode days or unlimited).",
                        param="store", code="store_disabled")
    if path == RESPONSES:
        body["store"] = False


def _completion(run: Run) -> dict[str, Any]:
    answer = json.loads(run.response_json or "{}")
    return {**answer, "metadata": json.loads(run.metadata_json) if run.metadata_json else {},
            "request_id": run.request_id}


def _messages(run: Run) -> list[dict[str, Any]]:
    request = json.loads(run.request_json)
    out = []
    for index, message in enumerate(request.get("messages") or []):
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        parts = content if isinstance(content, list) else None
        text = content if isinstance(content, str) else (
            "".join(p.get("text", "") for p in parts if isinstance(p, dict)) if parts else None)
        item = {"id": f"{run.response_id}-{index}", "role": message.get("role"),
                "content": text, "content_parts": parts}
        for extra in ("name", "tool_calls", "tool_call_id"):
            if extra in message:
                item[extra] = message[extra]
        out.append(item)
    return out


def _page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": has_more}


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise WireError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}",
                        param="limit", code="invalid_value")
    return int(raw)


def _order(request: Request) -> bool:
    """Newest first?"""
    order = request.query_params.get("order", "asc")
    if order not in ("asc", "desc"):
        raise WireError(400, "order must be asc or desc", param="order", code="invalid_value")
    return order == "desc"


def _metadata_filter(request: Request) -> dict[str, str]:
    return {key[len("metadata["):-1]: value for key, value in request.query_params.multi_items()
            if key.startswith("metadata[") and key.endswith("]")}


def not_found(kind: str, object_id: str) -> WireError:
    return WireError(404, f"No stored {kind} with id {object_id[:100]!r} on this deployment "
                          "(it was not stored, was deleted, or is past the deployment's run "
                          "retention)", code="not_found", kind="invalid_request_error")


class StoredCompletions:
    def __init__(self, db: Database, recorder: Recorder | None) -> None:
        self.db = db
        self.recorder = recorder

    async def serve(self, request: Request, served: ServedDeployment) -> Response:
        path, method = request.scope["path"], request.method
        if self.recorder is not None:  # what this process has not written yet, first
            await run_in_threadpool(self.recorder.flush)
        if path.startswith(RESPONSES + "/"):
            if method != "GET":
                raise WireError(405, f"Use GET {path}", code="method_not_allowed")
            response_id = path.removeprefix(RESPONSES + "/")
            run = await self._one(served, "responses", response_id, "response")
            return JSONResponse(json.loads(run.response_json or "{}"))
        rest = path.removeprefix(CHAT).strip("/")
        if not rest:
            return JSONResponse(await run_in_threadpool(self._list, request, served))
        completion_id, _, tail = rest.partition("/")
        if tail == "messages" and method == "GET":
            run = await self._one(served, "chat.completions", completion_id, "chat completion")
            messages = _messages(run)
            return JSONResponse(self._messages_page(request, messages))
        if tail:
            raise WireError(404, f"Unknown route {method} {path}", code="unknown_route")
        if method == "GET":
            run = await self._one(served, "chat.completions", completion_id, "chat completion")
            return JSONResponse(_completion(run))
        if method == "POST":
            body = await request.json() if await request.body() else {}
            if not isinstance(body, dict):
                raise WireError(400, "The body must be a JSON object", code="invalid_body")
            metadata = check_metadata(body.get("metadata"))
            return JSONResponse(await run_in_threadpool(
                self._update, served, completion_id, metadata))
        if method == "DELETE":
            await run_in_threadpool(self._delete, served, completion_id)
            return JSONResponse({"object": "chat.completion.deleted", "id": completion_id,
                                 "deleted": True})
        raise WireError(405, f"Use GET, POST or DELETE {path}", code="method_not_allowed")

    async def _one(self, served: ServedDeployment, route: str, object_id: str,
                   kind: str) -> Run:
        def read() -> Run | None:
            with self.db.session() as session:
                return stored.stored_run(session, served.id, route, object_id)

        run = await run_in_threadpool(read)
        if run is None or run.status != "completed":
            raise not_found(kind, object_id)
        return run

    def _list(self, request: Request, served: ServedDeployment) -> dict[str, Any]:
        limit, newest_first, wanted = _limit(request), _order(request), _metadata_filter(request)
        after_id = request.query_params.get("after")
        items: list[dict[str, Any]] = []
        has_more = False
        with self.db.session() as session:
            after = None
            if after_id:
                after = stored.stored_run(session, served.id, "chat.completions", after_id)
                if after is None:
                    raise not_found("chat completion", after_id)
            while True:  # metadata filters are applied to the rows read, page by page
                batch = stored.stored_runs(session, served.id, "chat.completions",
                                           newest_first=newest_first, after=after,
                                           limit=MAX_LIMIT)
                for run in batch:
                    completion = _completion(run)
                    if all(completion["metadata"].get(k) == v for k, v in wanted.items()):
                        if len(items) == limit:
                            has_more = True
                            break
                        items.append(completion)
                if has_more or len(batch) < MAX_LIMIT:
                    break
                after = batch[-1]
        return _page(items, has_more)

    def _messages_page(self, request: Request, messages: list[dict[str, Any]]
                       ) -> dict[str, Any]:
        limit, newest_first = _limit(request), _order(request)
        ordered = list(reversed(messages)) if newest_first else messages
        after = request.query_params.get("after")
        if after:
            ids = [m["id"] for m in ordered]
            if after not in ids:
                raise not_found("message", after)
            ordered = ordered[ids.index(after) + 1:]
        return _page(ordered[:limit], len(ordered) > limit)

    def _update(self, served: ServedDeployment, completion_id: str,
                metadata: dict[str, str]) -> dict[str, Any]:
        with self.db.session() as session:
            run = stored.stored_run(session, served.id, "chat.completions", completion_id)
            if run is None or run.status != "completed":
                raise not_found("chat completion", completion_id)
            run.metadata_json = json.dumps(metadata)
            session.flush()
            return _completion(run)

    def _delete(self, served: ServedDeployment, completion_id: str) -> None:
        with self.db.session() as session:
            run = stored.stored_run(session, served.id, "chat.completions", completion_id)
            if run is None or run.status != "completed":
                raise not_found("chat completion", completion_id)
            stored.delete_run(session, run)
