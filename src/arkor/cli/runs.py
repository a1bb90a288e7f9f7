"""``arkor endpoints runs``: read, mark, delete and export the calls a deployment served."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from arkor.cli.endpoints import Endpoint, Json, Org, Project, find
from arkor.cli.jobs import styled_status
from arkor.cli.output import cloud_errors, confirm_or_fail, console, fail, print_json
from arkor.cli.session import CloudSession, open_session, resolve_scope
from arkor.contract.models import RUN_MARKS, RUN_STATUSES
from arkor.sdk import ProjectScope, RunFilters
from arkor.sdk.models import Deployment, ExportedRuns, Run, RunPage, RunSummary

PREVIEW_CHARS = 36
NO_MARK = "none"
SKIPPED_WHY = "failed, cancelled, tool-call or non-text runs"
TEXT_KEYS = ("messages", "input", "instructions", "prompt")
STATUSES = f"{', '.join(RUN_STATUSES[:-1])} or {RUN_STATUSES[-1]}"

app = typer.Typer(
    help=(
        "Read, mark, delete and export the calls a deployment served (its stored runs).\n\n"
        "\b\nExamples:\n"
        "  arkor endpoints runs list support-bot --status failed --since 2025-06-01\n"
        "  arkor endpoints runs get support-bot RUN_ID\n"
        "  arkor endpoints runs mark support-bot RUN_ID good\n"
        "  arkor endpoints runs export support-bot --out runs.jsonl --good-only\n"
        "  arkor train --from-endpoint support-bot --good-only\n\n"
        "What is kept, and for how long, is the deployment's retention "
        "(`arkor endpoints update SLUG --retention ...`)."
    ),
    no_args_is_help=True,
)

Status = Annotated[str | None, typer.Option(
    "--status", help=f"Only runs that ended so: {STATUSES}.")]
KeyId = Annotated[str | None, typer.Option(
    "--key", metavar="KEY_ID",
    help="Only calls made with this key (its id, from `arkor endpoints keys list`).")]
Since = Annotated[str | None, typer.Option(
    "--since", metavar="ISO",
    help="Only runs at or after this time: 2025-06-01 or 2025-06-01T09:30:00Z "
         "(UTC unless it has an offset).")]
Until = Annotated[str | None, typer.Option(
    "--until", metavar="ISO", help="Only runs before this time (as --since).")]
Search = Annotated[str | None, typer.Option(
    "--search", metavar="TEXT",
    help="Only runs whose request or answer contains TEXT (any case).")]
Mark = Annotated[str | None, typer.Option(
    "--mark", help=f"Only runs marked so: {' or '.join(RUN_MARKS)}.")]
GoodOnly = Annotated[bool, typer.Option(
    "--good-only", help="Only runs marked good (the same as --mark good).")]
RunId = Annotated[str, typer.Argument(help="Run id (from `arkor endpoints runs list`).")]


def iso_flag(flag: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        stamp = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        fail(f"{flag} {value!r} is not an ISO time; write 2025-06-01 or 2025-06-01T09:30:00Z.")
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).isoformat()


def run_filters(*, status: str | None = None, key_id: str | None = None,
                since: str | None = None, until: str | None = None,
                search: str | None = None, mark: str | None = None,
                good_only: bool = False) -> RunFilters:
    """The filter flags as the SDK's filters; a bad value exits naming its flag."""
    if status is not None and status not in RUN_STATUSES:
        fail(f"--status must be {STATUSES}, not {status!r}.")
    if mark is not None and mark not in RUN_MARKS:
        fail(f"--mark must be {' or '.join(RUN_MARKS)}, not {mark!r}.")
    if good_only:
        if mark not in (None, RUN_MARKS[0]):
            fail(f"--good-only keeps runs marked {RUN_MARKS[0]}; leave out --mark {mark}.")
        mark = RUN_MARKS[0]
    return RunFilters(status=status, key_id=key_id, since=iso_flag("--since", since),
                      until=iso_flag("--until", until), q=search, mark=mark)


def when(created_at: str) -> str:
    try:
        stamp = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        return created_at
    return stamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def millis(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value} ms" if value < 1000 else f"{value / 1000:.2f} s"


def first_words(text: str, limit: int = PREVIEW_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut + "…"


def preview(run: RunSummary) -> Text:
    line = Text(first_words(run.prompt_preview) or "-")
    line.append(" → ", style="dim")
    if run.answer_preview:
        line.append(first_words(run.answer_preview))
    if run.error:
        line.append((" " if run.answer_preview else "") + first_words(run.error), style="red")
    return line


def key_label(run: RunSummary) -> str:
    return f"{run.key_prefix}…" if run.key_prefix else "-"


def runs_table(runs: list[RunSummary]) -> Table:
    table = Table()
    for header in ("TIME", "STATUS", "KEY", "TOKENS IN/OUT", "TTFT", "LATENCY", "MARK"):
        table.add_column(header, no_wrap=True)
    table.add_column("PROMPT → ANSWER")  # the one column that wraps in a narrow terminal
    table.add_column("ID", no_wrap=True)
    for run in runs:
        table.add_row(when(run.created_at), styled_status(run.status), key_label(run),
                      f"{run.usage.prompt_tokens}/{run.usage.completion_tokens}",
                      millis(run.ttft_ms), millis(run.latency_ms), run.mark or "",
                      preview(run), run.id)
    return table


def _content(content: Any) -> str:
    """A message's content as text: text parts joined, other parts named in brackets."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                kind = part.get("type", "part") if isinstance(part, dict) else "part"
                parts.append(f"[{kind}]")
        return "".join(parts)
    return "" if content is None else json.dumps(content)


def _call(name: Any, arguments: Any) -> str:
    return f"calls {name}({arguments if isinstance(arguments, str) else json.dumps(arguments)})"


def _chat_message(message: dict[str, Any]) -> list[tuple[str, str]]:
    role = str(message.get("role", "?"))
    if role == "tool":
        role = f"tool {message.get('tool_call_id', '')}".strip()
    lines = []
    text = _content(message.get("content"))
    if text:
        lines.append((role, text))
    for call in message.get("tool_calls") or []:
        function = call.get("function", {}) if isinstance(call, dict) else {}
        lines.append((role, _call(function.get("name"), function.get("arguments"))))
    return lines or [(role, "")]


def _responses_item(item: Any) -> list[tuple[str, str]]:
    if not isinstance(item, dict):
        return [("?", json.dumps(item))]
    if item.get("type") == "function_call":
        return [("assistant", _call(item.get("name"), item.get("arguments")))]
    if item.get("type") == "function_call_output":
        return [(f"tool {item.get('call_id', '')}".strip(), _content(item.get("output")))]
    if "role" in item:
        return _chat_message(item)
    return [(str(item.get("type", "?")), json.dumps(item))]


def conversation(run: Run) -> list[tuple[str, str]]:
    """What was sent, as (role, text) lines."""
    request = run.request
    if run.route == "completions":
        prompt = request.get("prompt")
        return [("prompt", prompt if isinstance(prompt, str) else json.dumps(prompt))]
    lines: list[tuple[str, str]] = []
    if run.route == "responses":
        if isinstance(request.get("instructions"), str):
            lines.append(("system", request["instructions"]))
        raw = request.get("input")
        if isinstance(raw, str):
            return [*lines, ("user", raw)]
        for item in raw if isinstance(raw, list) else []:
            lines += _responses_item(item)
        return lines
    for message in request.get("messages") or []:
        lines += _chat_message(message) if isinstance(message, dict) else [("?", str(message))]
    return lines


def answer(run: Run) -> list[tuple[str, str]]:
    """What was answered, as (role, text) lines; a choice past the first is numbered."""
    response = run.response
    if not response:
        return []
    if run.route == "responses":
        lines = []
        for item in response.get("output") or []:
            lines += _responses_item(item)
        return lines
    choices = response.get("choices")
    if isinstance(choices, list) and choices:
        lines = []
        for number, choice in enumerate(c for c in choices if isinstance(c, dict)):
            label = "answer" if number == 0 else f"answer {number + 1}"
            if run.route == "completions":
                lines.append((label, str(choice.get("text", ""))))
            else:
                lines += [(label, text) for _, text in _chat_message(choice.get("message") or {})]
        return lines
    rows = response.get("rows")  # the run ended before the route answered
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        return [("answer", str(rows[0].get("text") or ""))]
    return [("answer", json.dumps(response))]


def parameters(run: Run) -> str:
    given = {k: v for k, v in run.request.items() if k not in TEXT_KEYS}
    return "  ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                     for k, v in sorted(given.items())) or "-"


def show_run(run: Run) -> None:
    table = Table(show_header=False, box=None)
    table.add_column()
    table.add_column(overflow="fold")
    served = f"{run.base_model} + adapter {run.adapter}" if run.adapter else run.base_model
    rows: list[tuple[str, str | Text]] = [
        ("Id", run.id), ("Time", when(run.created_at)),
        ("Status", f"{styled_status(run.status)} (HTTP {run.http_status})"),
        ("Route", run.route + (" (stream)" if run.stream else "")),
        ("Key", f"{key_label(run)} ({run.key_id})" if run.key_id else "-"),
        ("Served", served),
        ("Tokens", f"{run.usage.prompt_tokens} in, {run.usage.completion_tokens} out"),
        ("TTFT", millis(run.ttft_ms)), ("Latency", millis(run.latency_ms)),
        ("Request id", run.request_id), ("Mark", run.mark or "-"),
        ("Parameters", Text(parameters(run))),
    ]
    if run.error:
        rows.append(("Error", Text(run.error, style="red")))
    for label, value in rows:
        table.add_row(f"[bold]{label}[/bold]", value)
    console.print(table)
    for title, lines in (("Messages", conversation(run)), ("Answer", answer(run))):
        console.print(f"\n[bold]{title}[/bold]")
        if not lines:
            console.print("  (none)")
        for role, text in lines:
            console.print(Text.assemble(("  " + role + ": ", "dim"), text))


def export_to(session: CloudSession, scope: ProjectScope, endpoint: str, filters: RunFilters
              ) -> tuple[Deployment, ExportedRuns]:
    """The endpoint and its runs as a chat dataset (what ``arkor train --dataset`` takes)."""
    deployment = find(session, scope, endpoint)
    return deployment, session.client.export_runs(deployment.id, scope, filters=filters)


def skipped_note(exported: ExportedRuns) -> str:
    if not exported.skipped:
        return "none skipped"
    runs = "run" if exported.skipped == 1 else "runs"
    return f"{exported.skipped} {runs} skipped ({SKIPPED_WHY} cannot be training lines)"


@app.command("list")
def runs_list(
    endpoint: Endpoint,
    status: Status = None,
    key_id: KeyId = None,
    since: Since = None,
    until: Until = None,
    search: Search = None,
    mark: Mark = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", metavar="N", help="Runs per page, 1-200 (default 50).")] = None,
    cursor: Annotated[str | None, typer.Option(
        "--cursor", help="Start after a page: the nextCursor that --json printed.")] = None,
    every: Annotated[bool, typer.Option(
        "--all", help="Every matching run, page after page.")] = False,
    org: Org = None,
    project: Project = None,
    as_json: Json = False,
) -> None:
    """List a deployment's runs, newest first: time, status, key, tokens, timing, preview.

    --json prints {"runs": [...], "nextCursor": ...}; pass nextCursor back as --cursor for
    the next page, or use --all.

    \b
    Examples:
      arkor endpoints runs list support-bot
      arkor endpoints runs list support-bot --status failed --since 2025-06-01T00:00:00Z
      arkor endpoints runs list support-bot --search refund --mark good --all
      arkor endpoints runs list support-bot --json | jq -r '.runs[].id'
    """
    filters = run_filters(status=status, key_id=key_id, since=since, until=until,
                          search=search, mark=mark)
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        deployment = find(session, scope, endpoint)
        page = session.client.list_runs(deployment.id, scope, filters=filters, limit=limit,
                                        cursor=cursor)
        runs = list(page.runs)
        while every and page.next_cursor is not None:
            page = session.client.list_runs(deployment.id, scope, filters=filters,
                                            limit=limit, cursor=page.next_cursor)
            runs += page.runs
    if as_json:
        print_json(RunPage(runs=runs, next_cursor=page.next_cursor))
        return
    if not runs:
        console.print(no_runs(deployment, filtered=filters != RunFilters()))
        return
    console.print(runs_table(runs))
    if page.next_cursor is not None:
        console.print(f"More runs: add --all, or --cursor {page.next_cursor}", markup=False)


def no_runs(deployment: Deployment, *, filtered: bool) -> str:
    if filtered:
        return "No runs match."
    if deployment.run_retention_mode == "disabled":
        return (f"No runs: {deployment.slug} keeps none (retention disabled). Keep them with "
                f"`arkor endpoints update {deployment.slug} --retention unlimited`.")
    return f"No runs yet: each call {deployment.slug} serves is kept here."


@app.command("get")
def runs_get(endpoint: Endpoint, run_id: RunId, org: Org = None, project: Project = None,
             as_json: Json = False) -> None:
    """Show one run: the messages, the answer, the parameters, timing and any error."""
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        run = session.client.get_run(find(session, scope, endpoint).id, run_id, scope)
    if as_json:
        print_json(run)
    else:
        show_run(run)


@app.command("mark")
def runs_mark(
    endpoint: Endpoint,
    run_id: RunId,
    mark: Annotated[str, typer.Argument(
        help=f"{', '.join(RUN_MARKS)} or {NO_MARK} (clears the mark).")],
    org: Org = None,
    project: Project = None,
    as_json: Json = False,
) -> None:
    """Mark a run good or bad (or none); `export --good-only` keeps the good ones.

    \b
    Examples:
      arkor endpoints runs mark support-bot RUN_ID good
      arkor endpoints runs mark support-bot RUN_ID none
    """
    if mark not in (*RUN_MARKS, NO_MARK):
        fail(f"Mark a run {', '.join(RUN_MARKS)} or {NO_MARK}, not {mark!r}.")
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        run = session.client.mark_run(find(session, scope, endpoint).id, run_id,
                                      None if mark == NO_MARK else mark, scope)
    if as_json:
        print_json(run)
    elif run.mark is None:
        console.print(f"Cleared the mark of run {run.id}.")
    else:
        console.print(f"Marked run {run.id} {run.mark}.")


@app.command("delete")
def runs_delete(
    endpoint: Endpoint,
    run_id: Annotated[str | None, typer.Argument(
        help="Run id (from `arkor endpoints runs list`); or --all.")] = None,
    every: Annotated[bool, typer.Option(
        "--all", help="Delete every stored run of the deployment.")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="With --all: do not ask to confirm.")] = False,
    org: Org = None,
    project: Project = None,
) -> None:
    """Delete one run, or every run of a deployment (--all, after confirming).

    \b
    Examples:
      arkor endpoints runs delete support-bot RUN_ID
      arkor endpoints runs delete support-bot --all --yes
    """
    if (run_id is None) == (not every):
        fail("Pass a RUN_ID, or --all to delete every run of the endpoint.")
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        deployment = find(session, scope, endpoint)
        if run_id is not None:
            session.client.delete_run(deployment.id, run_id, scope)
            console.print(f"Deleted run {run_id}.")
            return
        confirm_or_fail(f"Delete every stored run of {deployment.slug}?", assume_yes=yes)
        deleted = session.client.delete_runs(deployment.id, scope)
    console.print(f"Deleted {deleted} run{'' if deleted == 1 else 's'} of {deployment.slug}.")


@app.command("export")
def runs_export(
    endpoint: Endpoint,
    out: Annotated[Path, typer.Option(
        "--out", "-o", metavar="FILE", help="Where to write the JSONL (replaced if it exists).",
        dir_okay=False)],
    status: Status = None,
    key_id: KeyId = None,
    since: Since = None,
    until: Until = None,
    search: Search = None,
    mark: Mark = None,
    good_only: GoodOnly = False,
    org: Org = None,
    project: Project = None,
    as_json: Json = False,
) -> None:
    """Write the runs as a chat dataset: one {"messages": [...]} line per completed
    plain-chat run, the format `arkor train --dataset` takes.

    Failed and cancelled runs, and runs with tool calls or non-text content, are skipped
    and counted.

    \b
    Examples:
      arkor endpoints runs export support-bot --out runs.jsonl
      arkor endpoints runs export support-bot --out good.jsonl --good-only --since 2025-06-01
      arkor train --dataset good.jsonl
    """
    filters = run_filters(status=status, key_id=key_id, since=since, until=until,
                          search=search, mark=mark, good_only=good_only)
    session = open_session()
    with cloud_errors():
        deployment, exported = export_to(session, resolve_scope(session, org, project),
                                         endpoint, filters)
    try:
        out.write_text(exported.jsonl, encoding="utf-8")
    except OSError as exc:
        fail(f"Cannot write {out}: {exc.strerror or exc}")
    if as_json:
        print_json({"out": str(out), "exported": exported.exported,
                    "skipped": exported.skipped})
        return
    lines = "line" if exported.exported == 1 else "lines"
    console.print(f"Wrote {exported.exported} {lines} to {out} from {deployment.slug}; "
                  f"{skipped_note(exported)}.", markup=False)
    if exported.exported:
        console.print(f"Train on them: arkor train --dataset {out}", markup=False)
