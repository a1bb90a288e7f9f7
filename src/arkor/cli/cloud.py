"""``arkor cloud serve``: run the control plane and the edge on this machine."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any

import typer

from arkor.cli.output import console, fail, warn
from arkor.cloud.settings import DEFAULT_HOST, DEFAULT_PORT, SETTINGS, Setting, Settings

app = typer.Typer(help="Run your own Arkor cloud (control plane + edge) on this machine.",
                  no_args_is_help=True)


def build_settings(**options: Any) -> Settings:
    """Settings from the environment, with command-line values (not None) taking over; each
    ``--base-model`` is added to ``ARKOR_BASE_MODELS``."""
    try:
        given = {s.name: s.items(options[s.name]) if s.item else options[s.name]
                 for s in SETTINGS if options.get(s.name) is not None}
        extra = given.pop("base_models", ())
        settings = Settings.from_env(os.environ, **given)
        if extra:
            settings = replace(settings, base_models=settings.base_models + extra)
    except ValueError as exc:
        fail(str(exc))
    return settings


def run_server(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from arkor import heap
    from arkor.cloud.serving import server_config
    from arkor.cloud.signup import for_bind_address
    from arkor.middleware.access_log import configure_logging
    from arkor.server import create_app

    settings, warning = for_bind_address(settings, host)
    if warning:
        warn(warning)
    try:
        app = create_app(settings)
    except Exception as exc:  # a bad database URL, an unreachable PostgreSQL...
        fail(f"Could not start the control plane: {exc}")
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    heap.enable()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(f"Arkor cloud API:  http://{shown}:{port}")
    console.print(f"Deployments:      http://{shown}:{port}/d/<slug>/v1 (OpenAI base URL)")
    console.print(f"OpenAPI document: http://{shown}:{port}/openapi.json")
    console.print(f"Data directory:   {settings.data_dir}")
    console.print(f"Sign-up:          {settings.signup} (ARKOR_SIGNUP)")
    uvicorn.Server(server_config(app, settings, host=host, port=port)).run()


def _option(setting: Setting) -> inspect.Parameter:
    """``--<name>`` (or the repeatable ``option``) for one setting, its help naming the env var."""
    help_text = f"{setting.help} [env: {setting.env}]"
    if setting.item is None:
        annotation: Any = Annotated[setting.kind | None, typer.Option(help=help_text)]
    else:
        annotation = Annotated[list[str] | None, typer.Option(
            setting.option, metavar=setting.metavar, help=f"{help_text} Repeatable.")]
    return inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=annotation)


def _setting_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` one option per setting in place of its ``**options``."""
    signature = inspect.signature(command, eval_str=True)
    fixed = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*fixed, *map(_option, SETTINGS)])
    return command


@app.command("serve")
@_setting_options
def cloud_serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    **options: Any,
) -> None:
    """Serve the control-plane API and every deployment's OpenAI-compatible URL.

    \b
    Examples:
      arkor cloud serve
      arkor cloud serve --port 9000 --database-url postgresql://arkor@db/arkor
      arkor cloud serve --base-model my-org/qwen=/models/qwen2.5-0.5b
    """
    run_server(build_settings(**options), host, port)
