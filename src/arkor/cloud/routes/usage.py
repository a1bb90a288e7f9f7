"""Usage: a deployment's calls (optionally one key's) or a whole project's, as hourly or daily
buckets (UTC), counted from the engine's token counts whatever the run retention."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from arkor.cloud.auth import ProjectScopeDep
from arkor.cloud.deps import DatabaseDep
from arkor.cloud.dto import as_utc, iso
from arkor.cloud.errors import ApiError, error_responses
from arkor.contract import models as m
from arkor.store import deployments, usage
from arkor.store.tables import UsageBucket, utcnow

router = APIRouter(tags=["usage"])
SCOPED = error_responses(400, 401, 403, 404, 426)
DEFAULT_SPAN = timedelta(days=1)
MAX_SPAN = timedelta(days=400)

Granularity = Annotated[Literal["hour", "day"], Query(description="hour or day (UTC)")]
Since = Annotated[datetime | None, Query(alias="from", description="ISO time (default: a "
                                                                   "day before `to`)")]
Until = Annotated[datetime | None, Query(alias="to", description="ISO time (default: now)")]


def _span(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    until = as_utc(until) if until else utcnow()
    since = as_utc(since) if since else until - DEFAULT_SPAN
    if since >= until:
        raise ApiError(400, "from must be before to")
    if until - since > MAX_SPAN:
        raise ApiError(400, f"At most {MAX_SPAN.days} days at a time")
    return since, until


def _bucket(summary: usage.Summary) -> m.UsageBucketOut:
    return m.UsageBucketOut(
        start=iso(summary.start) or "", requests=summary.requests,
        prompt_tokens=summary.prompt_tokens, completion_tokens=summary.completion_tokens,
        errors={"4xx": summary.errors_4xx, "5xx": summary.errors_5xx},
        cancelled=summary.cancelled,
        latency_ms_mean=(summary.latency_ms_sum / summary.requests if summary.requests
                         else None),
        latency_ms_p50=usage.percentile(summary.histogram, 0.50),
        latency_ms_p95=usage.percentile(summary.histogram, 0.95),
        latency_ms_p99=usage.percentile(summary.histogram, 0.99))


def _report(rows: list[UsageBucket], granularity: str, since: datetime,
            until: datetime) -> m.UsageReport:
    total = usage.Summary(start=usage.hour_of(since))
    for row in rows:
        total.take(row)
    return m.UsageReport(granularity=granularity,  # type: ignore[arg-type]
                         since=iso(since) or "", until=iso(until) or "",
                         buckets=[_bucket(s) for s in usage.summarize(rows, granularity)],
                         total=_bucket(total))


@router.get("/v1/endpoints/{deployment_id}/usage", response_model=m.UsageReport,
            responses=SCOPED, summary="A deployment's usage as hourly or daily buckets")
def deployment_usage(deployment_id: str, db: DatabaseDep, scope: ProjectScopeDep,
                     granularity: Granularity = "hour", since: Since = None,
                     until: Until = None,
                     key_id: Annotated[str | None, Query(alias="keyId", max_length=36)] = None
                     ) -> m.UsageReport:
    start, end = _span(since, until)
    with db.session() as session:
        row = deployments.get_deployment(session, scope.project_id, deployment_id)
        if row is None:
            raise ApiError(404, f"Deployment {deployment_id!r} not found in this project")
        rows = usage.read_buckets(session, since=start, until=end, deployment_id=row.id,
                                  key_id=key_id)
        return _report(rows, granularity, start, end)


@router.get("/v1/usage", response_model=m.UsageReport, responses=SCOPED,
            summary="The project's usage (all its deployments) as hourly or daily buckets")
def project_usage(db: DatabaseDep, scope: ProjectScopeDep, granularity: Granularity = "day",
                  since: Since = None, until: Until = None) -> m.UsageReport:
    start, end = _span(since, until)
    with db.session() as session:
        rows = usage.read_buckets(session, since=start, until=end, project_id=scope.project_id)
        return _report(rows, granularity, start, end)
