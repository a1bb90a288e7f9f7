"""``arkor dev``: everything on this machine in one command."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from arkor.cli.cloud import build_settings, run_server
from arkor.cli.output import console
from arkor.cloud.settings import DEFAULT_HOST, DEFAULT_PORT


def dev(
    port: Annotated[int, typer.Option("--port", "-p", help="Control-plane port.")] = DEFAULT_PORT,
) -> None:
    """Start the local Arkor cloud (control plane, SQLite under ~/.arkor/cloud).

    Point the CLI and SDK at it with nothing to configure: it is their default URL.
    """
    if os.environ.get("ARKOR_CLOUD_API_URL"):
        console.print(
            f"Note: ARKOR_CLOUD_API_URL={os.environ['ARKOR_CLOUD_API_URL']} points the CLI "
            "elsewhere; this local cloud is still started."
        )
    run_server(build_settings(), DEFAULT_HOST, port)
