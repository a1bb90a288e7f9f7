"""Usage: a deployment's calls (optionally one key's) or a whole project's, as hourly or daily
buckets (UTC), counted from the engine's token counts whatever the run retention. A project's
counts its deployments and the control plane's ``/v1/inference/chat`` (kept per project), with
each one's total beside them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from arkor.cloud.auth import ProjectScopeDep
from arkor.cloud.deps import DatabaseDep
from arkor.cloud.dto import as_utc, iso
from arkor.cloud.errors import ApiError, error_responses
from arkor.contract import models as m
from arkor.store import deployments, usage
from arkor.store.tables import InferenceUsageBucket, UsageBucket, utcnow

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


def _total(rows: Sequence[usage.Bucket], since: datetime) -> usage.Summary:
    total = usage.Summary(start=usage.hour_of(since))
    for row in rows:
        total.take(row)
    return total


def _report(rows: Sequence[usage.Bucket], granularity: str, since: datetime,
            until: datetime) -> m.UsageReport:
    return m.UsageReport(granularity=granularity,  # type: ignore[arg-type]
                         since=iso(since) or "", until=iso(until) or "",
                         buckets=[_bucket(s) for s in usage.summarize(rows, granularity)],
                         total=_bucket(_total(rows, since)))


def _project_report(rows: list[UsageBucket], inference: list[InferenceUsageBucket],
                    slugs: dict[str, str], granularity: str, since: datetime,
                    until: datetime) -> m.ProjectUsageReport:
    per_deployment: dict[str, list[UsageBucket]] = {}
    for row in rows:
        per_deployment.setdefault(row.deployment_id, []).append(row)
    whole = _report([*rows, *inference], granularity, since, until)
    return m.ProjectUsageReport(
        granularity=whole.granularity, since=whole.since, until=whole.until,
        buckets=whole.buckets, total=whole.total,
        deployments=[m.DeploymentUsage(deployment_id=deployment_id,
                                       slug=slugs.get(deployment_id, ""),
                                       total=_bucket(_total(own, since)))
                     for deployment_id, own in sorted(
                         per_deployment.items(), key=lambda item: slugs.get(item[0], ""))],
        inference=_bucket(_total(inference, since)))


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


@router.get("/v1/usage", response_model=m.ProjectUsageReport, responses=SCOPED,
            summary="The project's usage (its deployments and the inference route) as hourly "
                    "or daily buckets, with each one's total")
def project_usage(db: DatabaseDep, scope: ProjectScopeDep, granularity: Granularity = "day",
                  since: Since = None, until: Until = None) -> m.ProjectUsageReport:
    start, end = _span(since, until)
    with db.session() as session:
        rows = usage.read_buckets(session, since=start, until=end, project_id=scope.project_id)
        inference = usage.read_inference_buckets(session, since=start, until=end,
                                                 project_id=scope.project_id)
        slugs = {d.id: d.slug for d in deployments.list_deployments(session, scope.project_id)}
        return _project_report(rows, inference, slugs, granularity, start, end)
