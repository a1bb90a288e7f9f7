"""``arkor endpoints``: publish a job's adapter or a base model at its own URL, and manage keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from arkor.cli.output import (
    cloud_errors,
    confirm_or_fail,
    console,
    err_console,
    fail,
    print_json,
)
from arkor.cli.session import CloudSession, open_session, resolve_scope
from arkor.contract.deployments import AUTH_FIXED_KEY, DEFAULT_AUTH_MODE, MODEL_MENU_LABEL
from arkor.sdk import (
    UNSET,
    AdapterTarget,
    BaseModelTarget,
    CheckpointAdapter,
    Deployment,
    FinalAdapter,
    ModelMenuTarget,
    NotFoundError,
    ProjectScope,
    RateLimits,
)

app = typer.Typer(
    help=(
        "Publish adapters and base models at their own OpenAI-compatible URL.\n\n"
        "\b\nExamples:\n"
        "  arkor endpoints create support-bot --final JOB_ID\n"
        "  arkor endpoints keys create support-bot --label production\n"
        "  arkor endpoints update support-bot --checkpoint JOB_ID:40\n"
        "  arkor endpoints limits support-bot --rpm 600 --tpm 200000\n"
        "  arkor endpoints runs list support-bot\n\n"
        "The project scope comes from .arkor/state.json, or --org and --project."
    ),
    no_args_is_help=True,
)
keys_app = typer.Typer(help="Issue, list and revoke a deployment's API keys.",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")

Org = Annotated[str | None, typer.Option("--org", help="Org slug (default: from state).")]
Project = Annotated[
    str | None, typer.Option("--project", help="Project slug (default: from state).")
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Endpoint = Annotated[str, typer.Argument(help="Deployment id or slug.")]
Final = Annotated[str | None, typer.Option("--final", metavar="JOB",
                                           help="Serve the final adapter of JOB.")]
Checkpoint = Annotated[str | None, typer.Option("--checkpoint", metavar="JOB:STEP",
                                                help="Serve checkpoint STEP of JOB.")]
BaseModel = Annotated[str | None, typer.Option("--base-model", metavar="NAME",
                                               help="Serve a base model without an adapter.")]
MenuFlag = Annotated[bool, typer.Option(
    "--model-menu", help="Serve every public base model; the request's model picks one.")]
Retention = Annotated[str | None, typer.Option(
    "--retention", help="Stored-run retention: unlimited, disabled or days.")]
RetentionDays = Annotated[int | None, typer.Option(
    "--retention-days", help="Days to keep runs (with --retention days).")]
ExpiresIn = Annotated[float | None, typer.Option(
    "--expires-in-days", metavar="DAYS",
    help="Expire in DAYS days: then it answers 404 and is deleted.")]
ExpiresAt = Annotated[str | None, typer.Option(
    "--expires-at", metavar="ISO", help="Expire at this time (UTC unless it has an offset).")]


def expiry_flag(expires_in: float | None, expires_at: str | None) -> str | None:
    """The expiry the flags ask for, as an ISO time; a bad one exits naming its flag."""
    if expires_in is not None and expires_at is not None:
        fail("Pass --expires-in-days or --expires-at, not both.")
    if expires_in is not None:
        if expires_in <= 0:
            fail("--expires-in-days must be more than 0.")
        return (datetime.now(UTC) + timedelta(days=expires_in)).isoformat()
    if expires_at is None:
        return None
    try:
        stamp = datetime.fromisoformat(expires_at.strip().replace("Z", "+00:00"))
    except ValueError:
        fail(f"--expires-at {expires_at!r} is not an ISO time; write 2026-12-31 or "
             "2026-12-31T09:30:00Z.")
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).isoformat()


def target_from_flags(
    final: str | None, checkpoint: str | None, base_model: str | None,
    model_menu: bool = False,
) -> AdapterTarget | BaseModelTarget | ModelMenuTarget | None:
    given = [f for f in (final, checkpoint, base_model, model_menu or None) if f is not None]
    if len(given) > 1:
        fail("Pass only one of --final, --checkpoint, --base-model and --model-menu.")
    if model_menu:
        return ModelMenuTarget()
    if final is not None:
        return AdapterTarget(adapter=FinalAdapter(job_id=final))
    if checkpoint is not None:
        job, sep, step = checkpoint.rpartition(":")
        if not sep or not job or not step.isdigit():
            fail(f"--checkpoint {checkpoint!r} must look like JOB:STEP, e.g. 3f2a...:40")
        return AdapterTarget(adapter=CheckpointAdapter(job_id=job, step=int(step)))
    if base_model is not None:
        return BaseModelTarget(base_model=base_model)
    return None


def describe_target(deployment: Deployment) -> str:
    target = deployment.target
    if isinstance(target, BaseModelTarget):
        return f"Base model: {target.base_model}"
    if isinstance(target, ModelMenuTarget):
        return f"{MODEL_MENU_LABEL}: {', '.join(target.models or [])}"
    if not isinstance(target, AdapterTarget):
        return f"{target.kind} (unknown to this arkor version)"
    adapter = target.adapter
    if isinstance(adapter, CheckpointAdapter):
        return f"Checkpoint step {adapter.step} (job {adapter.job_id[:8]})"
    return f"Final adapter (job {adapter.job_id[:8]})"


def describe_retention(deployment: Deployment) -> str:
    if deployment.run_retention_mode == "days":
        return f"{deployment.run_retention_days} days"
    return deployment.run_retention_mode or "-"


def describe_limits(limits: RateLimits) -> str:
    parts = [f"{value} {unit}" for value, unit in (
        (limits.requests_per_minute, "requests/min"), (limits.tokens_per_minute, "tokens/min"),
        (limits.concurrent_requests, "concurrent")) if value is not None]
    return ", ".join(parts) or "none"


def find(session: CloudSession, scope: ProjectScope, ref: str) -> Deployment:
    """A deployment by id, or else by slug."""
    try:
        return session.client.get_deployment(ref, scope)
    except NotFoundError:
        for deployment in session.client.list_deployments(scope):
            if deployment.slug == ref:
                return deployment
        raise


def show(deployment: Deployment) -> None:
    table = Table(show_header=False, box=None)
    table.add_column()
    table.add_column(overflow="fold")  # a long URL breaks across lines, never cut short
    for label, value in [
        ("Slug", deployment.slug), ("Id", deployment.id), ("Target", describe_target(deployment)),
        ("Auth", deployment.auth_mode), ("Enabled", "yes" if deployment.enabled else "no"),
        ("Retention", describe_retention(deployment)),
        ("Limits", describe_limits(deployment.limits)),
        ("Expires", deployment.expires_at or "never"), ("Created", deployment.created_at),
        ("Updated", deployment.updated_at), ("URL", deployment.url),
        ("Base URL", deployment.base_url),
    ]:
        if value is not None:
            table.add_row(f"[bold]{label}[/bold]", value)
    console.print(table)


def _retention_args(retention: str | None, days: int | None) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if retention is not None:
        args["run_retention_mode"] = retention
    if days is not None:
        args["run_retention_days"] = days
    return args


@app.command("list")
def endpoints_list(org: Org = None, project: Project = None, as_json: Json = False) -> None:
    """List the project's deployments."""
    session = open_session()
    with cloud_errors():
        deployments = session.client.list_deployments(resolve_scope(session, org, project))
    if as_json:
        print_json(deployments)
        return
    if not deployments:
        console.print(
            "No endpoints yet. Create one with `arkor endpoints create SLUG --final JOB`."
        )
        return
    table = Table("SLUG", "TARGET", "AUTH", "STATE", "ID")
    for d in deployments:
        table.add_row(d.slug, describe_target(d), d.auth_mode,
                      "enabled" if d.enabled else "disabled", d.id)
    console.print(table)


@app.command("create")
def endpoints_create(
    slug: Annotated[str, typer.Argument(help="2-50 chars of a-z, 0-9 and '-'.")],
    final: Final = None,
    checkpoint: Checkpoint = None,
    base_model: BaseModel = None,
    model_menu: MenuFlag = False,
    auth: Annotated[str, typer.Option("--auth", help="fixed_api_key or none.")] = DEFAULT_AUTH_MODE,
    retention: Retention = None,
    retention_days: RetentionDays = None,
    expires_in: ExpiresIn = None,
    expires_at: ExpiresAt = None,
    org: Org = None,
    project: Project = None,
    as_json: Json = False,
) -> None:
    """Create a deployment that serves a job's adapter, a base model, or the model menu.

    \b
    Examples:
      arkor endpoints create support-bot --final 3f2a9c1e-...
      arkor endpoints create triage-ckpt --checkpoint 3f2a9c1e-...:40 --auth none
      arkor endpoints create smol --base-model HuggingFaceTB/SmolLM2-135M-Instruct
      arkor endpoints create models --model-menu
    """
    target = target_from_flags(final, checkpoint, base_model, model_menu)
    if target is None:
        fail("Say what to serve: --final JOB, --checkpoint JOB:STEP, --base-model NAME or "
             "--model-menu.")
    expiry = expiry_flag(expires_in, expires_at)
    with cloud_errors():
        session = open_session(bootstrap=True)
        scope = resolve_scope(session, org, project, bootstrap=True)
        deployment = session.client.create_deployment(
            scope, slug=slug, target=target, auth_mode=auth,
            **_retention_args(retention, retention_days), expires_at=expiry,
        )
    if as_json:
        print_json(deployment)
        return
    console.print(f"Created endpoint [bold]{deployment.slug}[/bold] ({deployment.id}).")
    show(deployment)
    if deployment.auth_mode == AUTH_FIXED_KEY:
        console.print(
            f"Issue a key: arkor endpoints keys create {deployment.slug} --label production"
        )


@app.command("get")
def endpoints_get(
    endpoint: Endpoint, org: Org = None, project: Project = None, as_json: Json = False
) -> None:
    """Show one deployment."""
    session = open_session()
    with cloud_errors():
        deployment = find(session, resolve_scope(session, org, project), endpoint)
    if as_json:
        print_json(deployment)
    else:
        show(deployment)


@app.command("update")
def endpoints_update(
    endpoint: Endpoint,
    final: Final = None,
    checkpoint: Checkpoint = None,
    base_model: BaseModel = None,
    model_menu: MenuFlag = False,
    enabled: Annotated[bool | None, typer.Option(
        "--enable/--disable", help="Serve requests, or answer 404.")] = None,
    auth: Annotated[str | None, typer.Option("--auth", help="fixed_api_key or none.")] = None,
    retention: Retention = None,
    retention_days: RetentionDays = None,
    expires_in: ExpiresIn = None,
    expires_at: ExpiresAt = None,
    no_expiry: Annotated[bool, typer.Option(
        "--no-expiry", help="Remove the deployment's expiry.")] = False,
    org: Org = None,
    project: Project = None,
    as_json: Json = False,
) -> None:
    """Re-target, enable/disable, or change the auth mode, retention or expiry of a deployment.

    \b
    Examples:
      arkor endpoints update support-bot --checkpoint 3f2a9c1e-...:40
      arkor endpoints update support-bot --disable
      arkor endpoints update support-bot --auth none
    """
    target = target_from_flags(final, checkpoint, base_model, model_menu)
    changes: dict[str, Any] = {
        "target": target if target is not None else UNSET,
        "enabled": enabled if enabled is not None else UNSET,
        "auth_mode": auth if auth is not None else UNSET,
        **_retention_args(retention, retention_days),
    }
    expiry = expiry_flag(expires_in, expires_at)
    if no_expiry and expiry is not None:
        fail("Pass --no-expiry or a new expiry, not both.")
    if no_expiry or expiry is not None:
        changes["expires_at"] = expiry
    if all(v is UNSET for v in changes.values()):
        fail("Nothing to change: pass --final/--checkpoint/--base-model/--model-menu, "
             "--enable/--disable, "
             "--auth, --retention or an expiry.")
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        current = find(session, scope, endpoint)
        deployment = session.client.update_deployment(current.id, scope, **changes)
    if as_json:
        print_json(deployment)
    else:
        console.print(f"Updated endpoint [bold]{deployment.slug}[/bold].")
        show(deployment)


@app.command("limits")
def endpoints_limits(
    endpoint: Endpoint,
    key: Annotated[str | None, typer.Option(
        "--key", metavar="KEY_ID", help="Limit this key (from `arkor endpoints keys list`) "
                                        "instead of the whole deployment.")] = None,
    rpm: Annotated[int | None, typer.Option(
        "--rpm", min=0, metavar="N", help="Requests per minute (0 lifts the limit).")] = None,
    tpm: Annotated[int | None, typer.Option(
        "--tpm", min=0, metavar="N",
        help="Prompt and completion tokens per minute (0 lifts the limit).")] = None,
    concurrent: Annotated[int | None, typer.Option(
        "--concurrent", min=0, metavar="N",
        help="Requests in progress at once (0 lifts the limit).")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Lift every limit.")] = False,
    org: Org = None,
    project: Project = None,
    as_json: Json = False,
) -> None:
    """Set the rate limits of a deployment, or of one of its keys; without limits, show them.

    A call must be within its deployment's limits and its key's, on every server of the
    installation; over one it gets 429 with Retry-After. A limit not given keeps its value.

    \b
    Examples:
      arkor endpoints limits support-bot --rpm 600 --tpm 200000
      arkor endpoints limits support-bot --key KEY_ID --rpm 60 --concurrent 4
      arkor endpoints limits support-bot --key KEY_ID --tpm 0
      arkor endpoints limits support-bot --clear
    """
    given = {name: (value or None) for name, value in (
        ("requests_per_minute", rpm), ("tokens_per_minute", tpm),
        ("concurrent_requests", concurrent)) if value is not None}
    if clear and given:
        fail("--clear lifts every limit; pass it without --rpm, --tpm or --concurrent.")
    if clear:
        given = dict.fromkeys(("requests_per_minute", "tokens_per_minute",
                               "concurrent_requests"))
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        deployment = find(session, scope, endpoint)
        if key is None:
            if given:
                deployment = session.client.update_deployment(deployment.id, scope,
                                                              limits=given)
            limits, what = deployment.limits, f"endpoint {deployment.slug}"
            shown: Any = deployment
        else:
            if given:
                found = session.client.update_deployment_key(deployment.id, key, scope,
                                                             limits=given)
            else:
                keys = session.client.list_deployment_keys(deployment.id, scope)
                match = next((k for k in keys if k.id == key), None)
                if match is None:
                    fail(f"Key {key!r} is not a key of {deployment.slug}; "
                         f"`arkor endpoints keys list {deployment.slug}` shows them.")
                found = match
            limits, what = found.limits, f"key {found.label!r} of {deployment.slug}"
            shown = found
    if as_json:
        print_json(shown)
        return
    verb = "Limits" if not given else "Limits now"
    console.print(f"{verb} of {what}: {describe_limits(limits)}.")


@app.command("delete")
def endpoints_delete(
    endpoint: Endpoint,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    org: Org = None,
    project: Project = None,
) -> None:
    """Delete a deployment and all its keys; its URL answers 404 from then on."""
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        deployment = find(session, scope, endpoint)
        confirm_or_fail(f"Delete endpoint {deployment.slug} and its keys?", assume_yes=yes)
        session.client.delete_deployment(deployment.id, scope)
    console.print(f"Deleted endpoint {deployment.slug}.")


@keys_app.command("list")
def keys_list(
    endpoint: Endpoint, org: Org = None, project: Project = None, as_json: Json = False
) -> None:
    """List a deployment's keys (label, prefix, state, last use; never the secret)."""
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        keys = session.client.list_deployment_keys(find(session, scope, endpoint).id, scope)
    if as_json:
        print_json(keys)
        return
    if not keys:
        console.print("No keys yet.")
        return
    table = Table("LABEL", "PREFIX", "STATE", "LIMITS", "CREATED", "LAST USED", "ID")
    for k in keys:
        state = "active" if k.enabled else "[strike]revoked[/strike]"
        table.add_row(k.label, f"{k.prefix}…", state, describe_limits(k.limits), k.created_at,
                      k.last_used_at or "never", k.id)
    console.print(table)


@keys_app.command("create")
def keys_create(
    endpoint: Endpoint,
    label: Annotated[str, typer.Option("--label", help="1-80 chars, e.g. production.")],
    org: Org = None,
    project: Project = None,
    as_json: Json = False,
) -> None:
    """Issue an API key. Its secret is printed once: store it now."""
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        key = session.client.create_deployment_key(
            find(session, scope, endpoint).id, scope, label=label
        )
    err_console.print("[yellow]Copy this key now. It cannot be shown again.[/yellow]")
    if as_json:
        print_json({**key.to_wire(), "plaintext": key.plaintext})
        return
    console.print(f"Key {key.label!r} ({key.id}):")
    console.print(key.plaintext, markup=False)


@keys_app.command("revoke")
def keys_revoke(
    endpoint: Endpoint,
    key_id: Annotated[str, typer.Argument(help="Key id (from `arkor endpoints keys list`).")],
    org: Org = None,
    project: Project = None,
) -> None:
    """Revoke a key: requests with it get 401 from the next one on. It stays listed."""
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        session.client.revoke_deployment_key(find(session, scope, endpoint).id, key_id, scope)
    console.print(f"Revoked key {key_id}.")
