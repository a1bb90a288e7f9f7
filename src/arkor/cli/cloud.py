"""``arkor cloud serve``: run the control plane and the edge on this machine."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from arkor.cli.output import console, fail
from arkor.cloud.settings import DEFAULT_HOST, DEFAULT_PORT, SETTINGS, Settings
from arkor.engine.registry import BaseModelSpecError, parse_base_model_option

app = typer.Typer(help="Run your own Arkor cloud (control plane + edge) on this machine.",
                  no_args_is_help=True)

_HELP = {s.name: f"{s.help} [env: {s.env}]" for s in SETTINGS}


def build_settings(base_model: list[str] | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, with command-line values (not None) taking over."""
    try:
        settings = Settings.from_env(**overrides)
        extra = tuple(parse_base_model_option(v) for v in base_model or [])
        if extra:
            settings = replace(settings, base_models=settings.base_models + extra)
    except (BaseModelSpecError, ValueError) as exc:
        fail(str(exc))
    return settings


def run_server(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from arkor.cloud.access_log import configure_logging
    from arkor.cloud.app import create_app
    from arkor.cloud.serving import server_config

    try:
        app = create_app(settings)
    except Exception as exc:  # a bad database URL, an unreachable PostgreSQL...
        fail(f"Could not start the control plane: {exc}")
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(f"Arkor cloud API:  http://{shown}:{port}")
    console.print(f"Deployments:      http://{shown}:{port}/d/<slug>/v1 (OpenAI base URL)")
    console.print(f"OpenAPI document: http://{shown}:{port}/openapi.json")
    console.print(f"Data directory:   {settings.data_dir}")
    uvicorn.Server(server_config(app, settings, host=host, port=port)).run()


@app.command("serve")
def cloud_serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    data_dir: Annotated[Path | None, typer.Option(help=_HELP["data_dir"])] = None,
    database_url: Annotated[str | None, typer.Option(help=_HELP["database_url"])] = None,
    base_model: Annotated[list[str] | None, typer.Option(
        metavar="NAME=PATH", help=_HELP["base_models"] + " Repeatable.")] = None,
    min_client_version: Annotated[str | None, typer.Option(
        help=_HELP["min_client_version"])] = None,
    max_concurrent_jobs: Annotated[int | None, typer.Option(
        help=_HELP["max_concurrent_jobs"])] = None,
    max_upload_mb: Annotated[int | None, typer.Option(help=_HELP["max_upload_mb"])] = None,
    edge_domain: Annotated[str | None, typer.Option(help=_HELP["edge_domain"])] = None,
    public_edge_url: Annotated[str | None, typer.Option(help=_HELP["public_edge_url"])] = None,
    engine_max_batch: Annotated[int | None, typer.Option(help=_HELP["engine_max_batch"])] = None,
    engine_max_queue: Annotated[int | None, typer.Option(help=_HELP["engine_max_queue"])] = None,
    engine_max_adapters: Annotated[int | None, typer.Option(
        help=_HELP["engine_max_adapters"])] = None,
    max_body_kb: Annotated[int | None, typer.Option(help=_HELP["max_body_kb"])] = None,
    body_timeout_s: Annotated[int | None, typer.Option(help=_HELP["body_timeout_s"])] = None,
    header_timeout_s: Annotated[int | None, typer.Option(help=_HELP["header_timeout_s"])] = None,
    keep_alive_s: Annotated[int | None, typer.Option(help=_HELP["keep_alive_s"])] = None,
    max_connections: Annotated[int | None, typer.Option(help=_HELP["max_connections"])] = None,
    shutdown_timeout_s: Annotated[int | None, typer.Option(
        help=_HELP["shutdown_timeout_s"])] = None,
    allowed_host: Annotated[list[str] | None, typer.Option(
        metavar="NAME", help=_HELP["allowed_hosts"] + " Repeatable.")] = None,
    trusted_proxy: Annotated[list[str] | None, typer.Option(
        metavar="ADDRESS", help=_HELP["trusted_proxies"] + " Repeatable.")] = None,
    log_format: Annotated[str | None, typer.Option(help=_HELP["log_format"])] = None,
    log_level: Annotated[str | None, typer.Option(help=_HELP["log_level"])] = None,
    default_max_tokens: Annotated[int | None, typer.Option(
        help=_HELP["default_max_tokens"])] = None,
    max_tokens_cap: Annotated[int | None, typer.Option(help=_HELP["max_tokens_cap"])] = None,
    dataset_root: Annotated[list[Path] | None, typer.Option(
        metavar="DIR", help=_HELP["dataset_roots"] + " Repeatable.")] = None,
    slug_grace_days: Annotated[int | None, typer.Option(help=_HELP["slug_grace_days"])] = None,
) -> None:
    """Serve the control-plane API and every deployment's OpenAI-compatible URL.

    \b
    Examples:
      arkor cloud serve
      arkor cloud serve --port 9000 --database-url postgresql://arkor@db/arkor
      arkor cloud serve --base-model my-org/qwen=/models/qwen2.5-0.5b
    """
    settings = build_settings(
        base_model, data_dir=data_dir, database_url=database_url,
        min_client_version=min_client_version, max_concurrent_jobs=max_concurrent_jobs,
        max_upload_mb=max_upload_mb, edge_domain=edge_domain, public_edge_url=public_edge_url,
        engine_max_batch=engine_max_batch, engine_max_queue=engine_max_queue,
        engine_max_adapters=engine_max_adapters,
        max_body_kb=max_body_kb, body_timeout_s=body_timeout_s, header_timeout_s=header_timeout_s,
        keep_alive_s=keep_alive_s, max_connections=max_connections,
        shutdown_timeout_s=shutdown_timeout_s, allowed_hosts=tuple(allowed_host or ()),
        trusted_proxies=tuple(trusted_proxy or ()),
        log_format=log_format, log_level=log_level, default_max_tokens=default_max_tokens,
        max_tokens_cap=max_tokens_cap, dataset_roots=tuple(dataset_root or ()),
        slug_grace_days=slug_grace_days,
    )
    run_server(settings, host, port)
