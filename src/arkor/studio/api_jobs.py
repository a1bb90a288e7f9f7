"""``/api/jobs``: the job list, one job's live event stream, and cancelling a job."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arkor.sdk import CloudApiError
from arkor.studio.api_identity import upstream_of
from arkor.studio.upstream import error_response, scope_of, wire


async def list_jobs(request: Request) -> Response:
    upstream = upstream_of(request)
    credentials = upstream.credentials()
    state = upstream.usable_state(credentials) if credentials else None
    if credentials is None or state is None:
        return JSONResponse({"jobs": []})
    try:
        return await upstream.forward(credentials, "GET", "/v1/jobs",
                                      params=scope_of(state).params())
    except CloudApiError as exc:
        return error_response(exc)


async def job_events(request: Request) -> Response:
    upstream = upstream_of(request)
    credentials = upstream.credentials()
    state = upstream.usable_state(credentials) if credentials else None
    if credentials is None or state is None:
        return JSONResponse({"error": "No project state"}, status_code=400)
    headers = {"Accept": "text/event-stream"}
    last_event_id = request.headers.get("last-event-id")
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    job_id = quote(request.path_params["job_id"], safe="")
    try:
        return await upstream.stream(credentials, "GET", f"/v1/jobs/{job_id}/events/stream",
                                     params=scope_of(state).params(), headers=headers)
    except CloudApiError as exc:
        return error_response(exc)


async def cancel_job(request: Request) -> Response:
    upstream = upstream_of(request)
    credentials = upstream.credentials()
    state = upstream.usable_state(credentials) if credentials else None
    if credentials is None or state is None:
        return JSONResponse({"error": "No project state"}, status_code=400)
    try:
        async with upstream.client(credentials) as client:
            job = await client.cancel_job(request.path_params["job_id"], scope_of(state))
    except CloudApiError as exc:
        return error_response(exc)
    return JSONResponse({"job": wire(job)})


routes = [
    Route("/api/jobs", list_jobs, methods=["GET"]),
    Route("/api/jobs/{job_id}/events", job_events, methods=["GET"]),
    Route("/api/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
]
