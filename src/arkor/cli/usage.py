"""``arkor endpoints usage``: a deployment's calls and tokens over time, from the metering."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from arkor.cli.endpoints import Endpoint, Json, Org, Project, find
from arkor.cli.output import cloud_errors, console, fail, print_json
from arkor.cli.runs import iso_flag, millis, when
from arkor.cli.session import open_session, resolve_scope
from arkor.sdk.models import UsageBucketOut, UsageReport

GRANULARITIES = ("hour", "day")


def _row(table: Table, label: str, bucket: UsageBucketOut) -> None:
    errors = bucket.errors.get("4xx", 0) + bucket.errors.get("5xx", 0)
    table.add_row(label, str(bucket.requests), str(bucket.prompt_tokens),
                  str(bucket.completion_tokens),
                  f"{bucket.errors.get('4xx', 0)}/{bucket.errors.get('5xx', 0)}"
                  if errors else "0", str(bucket.cancelled), millis(bucket.latency_ms_p50),
                  millis(bucket.latency_ms_p95))


def show_usage(report: UsageReport, what: str) -> None:
    if not report.buckets:
        console.print(f"No calls to {what} between {when(report.since)} and "
                      f"{when(report.until)} UTC.")
        return
    table = Table(title=f"Usage of {what} by {report.granularity} (UTC)")
    for column in ("Start", "Requests", "Prompt tokens", "Completion tokens",
                   "Errors 4xx/5xx", "Cancelled", "p50", "p95"):
        table.add_column(column, justify="left" if column == "Start" else "right")
    for bucket in report.buckets:
        _row(table, when(bucket.start), bucket)
    table.add_section()
    _row(table, "Total", report.total)
    console.print(table)


def endpoints_usage(
    endpoint: Endpoint,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="ISO", help="From this time (default: a day before --until).")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", metavar="ISO", help="Until this time (default: now).")] = None,
    granularity: Annotated[str, typer.Option(
        "--by", help="Buckets of an hour or a day (UTC).")] = "hour",
    key_id: Annotated[str | None, typer.Option(
        "--key", metavar="KEY_ID", help="Only the calls made with this key.")] = None,
    org: Org = None, project: Project = None, as_json: Json = False,
) -> None:
    """A deployment's requests, tokens, errors and latency over time.

    Counted from the engine's token counts for every call the deployment answered, streamed or
    not, whatever its run retention keeps.

    \b
    Examples:
      arkor endpoints usage support-bot
      arkor endpoints usage support-bot --by day --since 2026-11-01
    """
    if granularity not in GRANULARITIES:
        fail(f"--by must be hour or day, not {granularity!r}.")
    start, end = iso_flag("--since", since), iso_flag("--until", until)
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        deployment = find(session, scope, endpoint)
        report = session.client.get_usage(deployment.id, scope, granularity=granularity,
                                          since=start, until=end, key_id=key_id)
    if as_json:
        print_json(report)
    else:
        show_usage(report, deployment.slug)
