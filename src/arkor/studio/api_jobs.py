"""``/api/jobs``: the job list, one job's live event stream, and cancelling a job."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arkor.sdk import CredentialsError, ProjectScope
from arkor.studio.api_identity import upstream_of
from arkor.studio.upstream import Creds, Upstream, scope_of, wire

NO_PROJECT_STATE = "No project state"


def _project(upstream: Upstream) -> tuple[Creds, ProjectScope] | None:
    """The saved credentials and usable state, if both exist: these routes never sign in."""
    credentials = upstream.credentials()
    state = upstream.usable_state(credentials) if credentials else None
    return (credentials, scope_of(state)) if credentials and state else None


def _required_project(upstream: Upstream) -> tuple[Creds, ProjectScope]:
    project = _project(upstream)
    if project is None:
        raise CredentialsError(NO_PROJECT_STATE)
    return project


async def list_jobs(request: Request) -> Response:
    upstream = upstream_of(request)
    project = _project(upstream)
    if project is None:
        return JSONResponse({"jobs": []})
    credentials, scope = project
    return await upstream.pass_through(credentials, "GET", "/v1/jobs", params=scope.params())


async def job_events(request: Request) -> Response:
    upstream = upstream_of(request)
    credentials, scope = _required_project(upstream)
    headers = {"Accept": "text/event-stream"}
    last_event_id = request.headers.get("last-event-id")
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    job_id = quote(request.path_params["job_id"], safe="")
    return await upstream.relay(credentials, "GET", f"/v1/jobs/{job_id}/events/stream",
                                params=scope.params(), headers=headers)


async def cancel_job(request: Request) -> Response:
    upstream = upstream_of(request)
    credentials, scope = _required_project(upstream)
    async with upstream.client(credentials) as client:
        job = await client.cancel_job(request.path_params["job_id"], scope)
    return JSONResponse({"job": wire(job)})


routes = [
    Route("/api/jobs", list_jobs, methods=["GET"]),
    Route("/api/jobs/{job_id}/events", job_events, methods=["GET"]),
    Route("/api/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
]
