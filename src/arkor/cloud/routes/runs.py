"""A deployment's stored runs: list (newest first, cursor pages, filters), read, mark good or
bad, delete one or all, and export as a chat dataset. Runs hold prompts and answers, so every
route needs the member role (a viewer sees a deployment, not what was said to it)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from arkor.cloud import run_export
from arkor.cloud.auth import ProjectScope, ProjectScopeDep
from arkor.cloud.deps import DatabaseDep
from arkor.cloud.dto import as_utc, run_dto
from arkor.cloud.errors import ApiError, error_responses
from arkor.contract import models as m
from arkor.store import deployments, runs
from arkor.store.runs import RunFilter
from arkor.store.tables import Run

router = APIRouter(tags=["runs"])
SCOPED = error_responses(400, 401, 403, 404, 426)
RUNS = "/v1/endpoints/{deployment_id}/runs"
MAX_PAGE = 200
EXPORT_PAGE = 500


class RunEnvelope(BaseModel):
    run: m.Run


class MarkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mark: m.RunMark | None


class Deleted(BaseModel):
    deleted: int


Status = Annotated[m.RunStatus | None, Query(description="completed, failed or cancelled")]
KeyId = Annotated[str | None, Query(alias="keyId", max_length=36)]
Since = Annotated[datetime | None, Query(alias="from", description="ISO time, inclusive")]
Until = Annotated[datetime | None, Query(alias="to", description="ISO time, exclusive")]
Text = Annotated[str | None, Query(alias="q", max_length=200,
                                   description="Text in the request or the answer")]
Mark = Annotated[m.RunMark | None, Query(description="good or bad")]


def _deployment(session: Session, scope: ProjectScope, deployment_id: str) -> str:
    row = deployments.get_deployment(session, scope.project_id, deployment_id)
    if row is None:
        raise ApiError(404, f"Deployment {deployment_id!r} not found in this project")
    return row.id


def _run(session: Session, scope: ProjectScope, deployment_id: str, run_id: str) -> Run:
    found = runs.get_run(session, _deployment(session, scope, deployment_id), run_id)
    if found is None:
        raise ApiError(404, f"Run {run_id!r} not found on this deployment")
    return found


def _filters(status: str | None, key_id: str | None, since: datetime | None,
             until: datetime | None, text: str | None, mark: str | None) -> RunFilter:
    return RunFilter(status=status, key_id=key_id, since=as_utc(since) if since else None,
                     until=as_utc(until) if until else None,
                     text=text.strip() if text and text.strip() else None, mark=mark)


@router.get(RUNS, response_model=m.RunPage, responses=SCOPED,
            summary="List a deployment's stored runs, newest first ({runs, nextCursor})")
def list_runs(deployment_id: str, db: DatabaseDep, scope: ProjectScopeDep,
              status: Status = None, key_id: KeyId = None, since: Since = None,
              until: Until = None, text: Text = None, mark: Mark = None,
              limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
              cursor: Annotated[str | None, Query(max_length=200)] = None) -> m.RunPage:
    with db.session() as session:
        owner = _deployment(session, scope, deployment_id)
        try:
            rows, next_cursor = runs.list_runs(
                session, owner, _filters(status, key_id, since, until, text, mark),
                limit=limit, cursor=cursor)
        except ValueError as exc:
            raise ApiError(400, f"cursor: {exc}; pass the nextCursor of a previous page") \
                from exc
        return m.RunPage(runs=[run_dto(r) for r in rows], next_cursor=next_cursor)


@router.get(RUNS + "/export", responses=SCOPED,
            response_class=Response,
            summary="The completed plain-chat runs as a chat dataset (JSONL), newest first; "
                    "x-arkor-skipped says how many matching runs could not be lines")
def export_runs(deployment_id: str, db: DatabaseDep, scope: ProjectScopeDep,
                status: Status = None, key_id: KeyId = None, since: Since = None,
                until: Until = None, text: Text = None, mark: Mark = None) -> Response:
    lines: list[str] = []
    skipped = 0
    with db.session() as session:
        owner = _deployment(session, scope, deployment_id)
        filters = _filters(status, key_id, since, until, text, mark)
        cursor = None
        while True:
            rows, cursor = runs.list_runs(session, owner, filters, limit=EXPORT_PAGE,
                                          cursor=cursor)
            for row in rows:
                line = run_export.dataset_line(
                    row.route, row.status, json.loads(row.request_json),
                    json.loads(row.response_json) if row.response_json else None)
                if line is None:
                    skipped += 1
                else:
                    lines.append(json.dumps(line, ensure_ascii=False))
            if cursor is None:
                break
    body = "".join(line + "\n" for line in lines)
    return Response(body, media_type="application/x-ndjson", headers={
        "x-arkor-exported": str(len(lines)), "x-arkor-skipped": str(skipped)})


@router.delete(RUNS, response_model=Deleted, responses=SCOPED,
               summary="Delete every stored run of a deployment")
def delete_all_runs(deployment_id: str, db: DatabaseDep, scope: ProjectScopeDep) -> Deleted:
    with db.session() as session:
        return Deleted(deleted=runs.delete_runs(session,
                                                _deployment(session, scope, deployment_id)))


@router.get(RUNS + "/{run_id}", response_model=RunEnvelope, responses=SCOPED,
            summary="One stored run with its request and answer")
def get_run(deployment_id: str, run_id: str, db: DatabaseDep,
            scope: ProjectScopeDep) -> RunEnvelope:
    with db.session() as session:
        found = run_dto(_run(session, scope, deployment_id, run_id), whole=True)
        assert isinstance(found, m.Run)
        return RunEnvelope(run=found)


@router.patch(RUNS + "/{run_id}", response_model=RunEnvelope, responses=SCOPED,
              summary="Mark a run good or bad (null clears it); export can keep only good ones")
def mark_run(deployment_id: str, run_id: str, body: MarkBody, db: DatabaseDep,
             scope: ProjectScopeDep) -> RunEnvelope:
    with db.session() as session:
        row = _run(session, scope, deployment_id, run_id)
        row.mark = body.mark
        session.flush()
        found = run_dto(row, whole=True)
        assert isinstance(found, m.Run)
        return RunEnvelope(run=found)


@router.delete(RUNS + "/{run_id}", status_code=204, response_class=Response,
               responses=SCOPED, summary="Delete one stored run")
def delete_run(deployment_id: str, run_id: str, db: DatabaseDep,
               scope: ProjectScopeDep) -> Response:
    with db.session() as session:
        runs.delete_run(session, _run(session, scope, deployment_id, run_id))
    return Response(status_code=204)
