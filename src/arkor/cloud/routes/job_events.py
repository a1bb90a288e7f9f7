"""``GET /v1/jobs/{id}/events/stream``: the job's events as Server-Sent Events.

Every frame has ``id:`` (the stored event's id), ``event: <type>`` and a JSON ``data`` whose
``type`` matches. History is replayed after ``Last-Event-ID``; new events follow as they are
stored (polled, so it works across processes); ``ping`` keeps idle connections alive; after
a terminal event (or a job that ended) the stream sends ``end`` and closes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from arkor.cloud.auth import ProjectScopeDep
from arkor.cloud.deps import DatabaseDep
from arkor.cloud.errors import ApiError, error_responses
from arkor.contract.events import TERMINAL_EVENTS
from arkor.store import jobs
from arkor.store.db import Database
from arkor.store.tables import Job
from arkor.targets import job_or_404

router = APIRouter(tags=["jobs"])

POLL_SECONDS = 0.3
PING_SECONDS = 15.0


def frame(event_id: int, kind: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def parse_last_event_id(value: str | None) -> int:
    if value is None or not value.strip():
        return 0
    try:
        return max(0, int(value.strip()))
    except ValueError:
        raise ApiError(400, "Last-Event-ID must be the id of an event from this stream") from None


def _poll(db: Database, job_id: str, after: int
          ) -> tuple[list[tuple[int, str, dict[str, Any]]], str]:
    # The status first: a job's terminal status and its terminal event are committed
    # together, so events read after a terminal status include that event. Read the other
    # way round (SQLite gives the two reads no common snapshot), a job that finished between
    # them looked ended with its last event unread, and the stream said `end` without it.
    with db.session() as session:
        job = session.get(Job, job_id)
        status = job.status if job else "failed"
        rows = jobs.events_after(session, job_id, after)
        return [(r.id, r.type, r.payload) for r in rows], status


async def event_stream(request: Request, db: Database, job_id: str, after: int
                       ) -> AsyncIterator[bytes]:
    last = after
    quiet_since = time.monotonic()
    while True:
        rows, status = await run_in_threadpool(_poll, db, job_id, last)
        for event_id, kind, payload in rows:
            last = event_id
            yield frame(event_id, kind, payload)
            if kind in TERMINAL_EVENTS:
                yield frame(last, "end", {"type": "end", "jobId": job_id})
                return
        if not rows and status in jobs.TERMINAL_STATUSES:
            yield frame(last, "end", {"type": "end", "jobId": job_id})
            return
        if rows:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= PING_SECONDS:
            quiet_since = time.monotonic()
            yield frame(last, "ping", {"type": "ping", "jobId": job_id})
        if await request.is_disconnected():
            return
        await asyncio.sleep(POLL_SECONDS)


@router.get(
    "/v1/jobs/{job_id}/events/stream",
    responses={**error_responses(400, 401, 403, 404, 426),
               200: {"content": {"text/event-stream": {}},
                     "description": "Server-Sent Events: training.* events, ping, end"}},
    response_class=StreamingResponse,
    summary="Stream the job's events (SSE), resuming after Last-Event-ID",
)
async def stream_job_events(
    job_id: str,
    request: Request,
    db: DatabaseDep,
    scope: ProjectScopeDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    after = parse_last_event_id(last_event_id)

    def exists() -> None:
        with db.session() as session:
            job_or_404(session, scope.project_id, job_id)

    await run_in_threadpool(exists)
    return StreamingResponse(
        event_stream(request, db, job_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
    )
