"""``arkor jobs``: list, inspect, cancel and follow training jobs, and import adapters."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from arkor.cli.output import cloud_errors, console, fail, print_json
from arkor.cli.session import open_session, resolve_scope
from arkor.sdk import ApiTimeoutError, CloudApiClient, JobEvent, TrainingJob

NO_FOLLOW_IDLE_SECONDS = 2.0

app = typer.Typer(
    help=(
        "List, inspect, cancel and follow training jobs; import adapters trained elsewhere.\n\n"
        "\b\nExamples:\n"
        "  arkor jobs list\n"
        "  arkor jobs get JOB_ID\n"
        "  arkor jobs events JOB_ID --json\n"
        "  arkor jobs cancel JOB_ID\n"
        "  arkor jobs import ./my-adapter --name support-v2\n\n"
        "Start a job with `arkor train`. The project scope comes from .arkor/state.json, or "
        "--org and --project."
    ),
    no_args_is_help=True,
)

Org = Annotated[str | None, typer.Option("--org", help="Org slug (default: from state).")]
Project = Annotated[
    str | None, typer.Option("--project", help="Project slug (default: from state).")
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
JobId = Annotated[str, typer.Argument(help="Job id (from `arkor jobs list`).")]


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(job: TrainingJob, now: datetime | None = None) -> str:
    started = _parse_time(job.started_at)
    if started is None:
        return "-"
    ended = _parse_time(job.completed_at) or (now or datetime.now(UTC))
    seconds = max(0, int((ended - started).total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


STATUS_STYLES = {"completed": "green", "failed": "red", "cancelled": "yellow",
                 "running": "cyan", "queued": "dim"}


def styled_status(status: str) -> str:
    style = STATUS_STYLES.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def show_job(job: TrainingJob) -> None:
    table = Table(show_header=False, box=None)
    config = job.config
    rows = [
        ("Name", job.name), ("Id", job.id), ("Status", styled_status(job.status)),
        ("Model", str(config.get("model", "-"))), ("Created", job.created_at),
        ("Started", job.started_at or "-"), ("Ended", job.completed_at or "-"),
        ("Duration", duration(job)),
        ("Final adapter", "yes" if job.has_final_adapter else "no"),
    ]
    if job.error:
        rows.append(("Error", f"[red]{job.error}[/red]"))
    for label, value in rows:
        table.add_row(f"[bold]{label}[/bold]", value)
    steps = ", ".join(str(c.step) for c in job.checkpoints) or "none"
    table.add_row("[bold]Checkpoints[/bold]", steps)
    console.print(table)


def describe_event(event: JobEvent) -> str:
    data = event.data
    parts = [f"[{event.id}]" if event.id else "", event.type]
    for key in ("step", "loss", "evalLoss", "learningRate"):
        if isinstance(data.get(key), int | float):
            value = data[key]
            parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    if data.get("error"):
        parts.append(f"error={data['error']}")
    return " ".join(p for p in parts if p)


def print_event(event: JobEvent, *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"id": event.id, "type": event.type, "data": event.data})
                         + "\n")
        sys.stdout.flush()
    elif event.type != "end":
        console.print(describe_event(event), markup=False)


@app.command("list")
def jobs_list(org: Org = None, project: Project = None, as_json: Json = False) -> None:
    """List the project's jobs, newest first."""
    session = open_session()
    with cloud_errors():
        jobs = session.client.list_jobs(resolve_scope(session, org, project))
    if as_json:
        print_json(jobs)
        return
    if not jobs:
        console.print("No jobs yet. Start one with `arkor train --demo`.")
        return
    table = Table("STATUS", "NAME")
    table.add_column("CREATED", no_wrap=True)
    table.add_column("DURATION", no_wrap=True)
    table.add_column("ID", overflow="fold", min_width=36)
    for job in jobs:
        created = _parse_time(job.created_at)
        when = created.strftime("%Y-%m-%d %H:%M:%S") if created else job.created_at
        table.add_row(styled_status(job.status), job.name, when, duration(job), job.id)
    console.print(table)


@app.command("get")
def jobs_get(job_id: JobId, org: Org = None, project: Project = None,
             as_json: Json = False) -> None:
    """Show one job: status, timings, error and checkpoints."""
    session = open_session()
    with cloud_errors():
        job = session.client.get_job(job_id, resolve_scope(session, org, project))
    if as_json:
        print_json(job)
    else:
        show_job(job)


@app.command("cancel")
def jobs_cancel(job_id: JobId, org: Org = None, project: Project = None,
                as_json: Json = False) -> None:
    """Cancel a queued or running job. A job that has ended cannot be cancelled."""
    session = open_session()
    with cloud_errors():
        job = session.client.cancel_job(job_id, resolve_scope(session, org, project))
    if as_json:
        print_json(job)
    else:
        console.print(f"Cancelled job {job.name} ({job.id}).")


@app.command("events")
def jobs_events(
    job_id: JobId,
    follow: Annotated[bool, typer.Option(
        "--follow/--no-follow",
        help="Keep following until the job ends, or print what is there and stop.")] = True,
    last_event_id: Annotated[int | None, typer.Option(
        "--last-event-id", metavar="N", help="Only events after event N.")] = None,
    org: Org = None,
    project: Project = None,
    as_json: Json = False,
) -> None:
    """Print a job's events: training.started, training.log, checkpoint.saved, ...

    \b
    Examples:
      arkor jobs events JOB_ID
      arkor jobs events JOB_ID --no-follow --last-event-id 12
      arkor jobs events JOB_ID --json | jq -r 'select(.type=="training.log") | .data.loss'
    """
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        # Without --follow, a quiet stream (the history has been sent) ends the command.
        client = session.client if follow else CloudApiClient(
            base_url=session.client.base_url, credentials=session.credentials,
            timeout=NO_FOLLOW_IDLE_SECONDS)
        try:
            for event in client.stream_events(job_id, scope, last_event_id=last_event_id,
                                              reconnect=follow):
                print_event(event, as_json=as_json)
        except ApiTimeoutError:
            if follow:
                raise
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        finally:
            client.close()


@app.command("import")
def jobs_import(
    adapter_dir: Annotated[Path, typer.Argument(
        help="A PEFT LoRA directory with adapter_config.json and adapter_model.safetensors.")],
    name: Annotated[str, typer.Option("--name", help="Name for the imported job.")],
    model: Annotated[str | None, typer.Option(
        "--model", help="Base model (default: the adapter's own if registered).")] = None,
    org: Org = None,
    project: Project = None,
    as_json: Json = False,
) -> None:
    """Import a LoRA adapter trained elsewhere as a completed job you can deploy.

    \b
    Examples:
      arkor jobs import ./outputs/final --name support-v2
      arkor endpoints create support-v2 --final JOB_ID
    """
    with cloud_errors():
        session = open_session(bootstrap=True)
        scope = resolve_scope(session, org, project, bootstrap=True)
        try:
            job = session.client.import_adapter(scope, adapter_dir, name=name, model=model)
        except OSError as exc:
            fail(str(exc))
    if as_json:
        print_json(job)
        return
    console.print(f"Imported [bold]{job.name}[/bold] as job {job.id} "
                  f"({job.config.get('model')}).")
    console.print(f"Deploy it: arkor endpoints create SLUG --final {job.id}")

