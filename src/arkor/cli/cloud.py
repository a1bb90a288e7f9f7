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

    from arkor.cloud.app import create_app

    try:
        app = create_app(settings)
    except Exception as exc:  # a bad database URL, an unreachable PostgreSQL...
        fail(f"Could not start the control plane: {exc}")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(f"Arkor cloud API:  http://{shown}:{port}")
    console.print(f"Deployments:      http://{shown}:{port}/d/<slug>/v1 (OpenAI base URL)")
    console.print(f"OpenAPI document: http://{shown}:{port}/openapi.json")
    console.print(f"Data directory:   {settings.data_dir}")
    uvicorn.run(app, host=host, port=port, log_level="warning")


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
    )
    run_server(settings, host, port)
