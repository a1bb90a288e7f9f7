"""``arkor dev``: the Studio in the browser, with the local cloud behind it, in one command."""

from __future__ import annotations

import os
import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from arkor.cli.cloud import build_settings
from arkor.cli.output import console, fail, warn
from arkor.cloud.settings import DEFAULT_PORT
from arkor.sdk import DEFAULT_CLOUD_API_URL, CloudApiError, ensure_credentials, read_credentials


def external_cloud_url(cloud_port: int) -> str | None:
    """The control plane the user pointed us at, or ``None`` to run the embedded one."""
    local = {DEFAULT_CLOUD_API_URL, f"http://127.0.0.1:{cloud_port}",
             f"http://localhost:{cloud_port}"}
    env = os.environ.get("ARKOR_CLOUD_API_URL")
    if env is not None:
        return None if env.rstrip("/") in local else env.rstrip("/")
    credentials = read_credentials()
    saved = credentials.arkor_cloud_api_url if credentials else None
    if saved and saved.rstrip("/") not in local:
        return saved.rstrip("/")
    return None


def _start_cloud(cloud_port: int) -> tuple[str, object | None]:
    from arkor.studio.embedded_cloud import EmbeddedCloud, is_arkor_cloud
    from arkor.studio.ports import port_is_free

    url = f"http://127.0.0.1:{cloud_port}"
    if not port_is_free(cloud_port):
        if is_arkor_cloud(url):
            console.print(f"Reusing the Arkor cloud already running on {url}")
            return url, None
        fail(f"Port {cloud_port} is in use by something that is not an Arkor cloud. "
             "Pass --cloud-port to run the local cloud elsewhere.")
    cloud = EmbeddedCloud(build_settings(), cloud_port)
    try:
        cloud.start()
    except Exception as exc:
        fail(f"Could not start the local cloud: {exc}")
    return url, cloud


def _sign_in(cloud_url: str) -> None:
    """First run: an anonymous identity, so the Studio opens signed in. A failure is not
    fatal; the Studio tries again on its first request."""
    if read_credentials() is not None:
        return
    try:
        ensure_credentials(base_url=cloud_url)
    except CloudApiError as exc:
        warn(f"Could not sign in anonymously yet ({exc.message}); the Studio will retry.")


def dev(
    port: Annotated[int | None, typer.Option(
        "--port", "-p", help="Studio port on 127.0.0.1 (default 4000, or the next free one "
        "up to 4009).", show_default=False)] = None,
    cloud_port: Annotated[int, typer.Option(
        "--cloud-port", help="Port of the local cloud (control plane and deployment URLs); "
        "an Arkor cloud already running there is reused.")] = DEFAULT_PORT,
    open_browser: Annotated[bool, typer.Option(
        "--open", help="Open the Studio in the default browser.")] = False,
) -> None:
    """Open Arkor Studio on this machine, with the local cloud behind it.

    The local cloud (control plane, deployment URLs, engine and training runner, SQLite
    under ~/.arkor/cloud) starts in the same process unless ARKOR_CLOUD_API_URL or your
    credentials point at another control plane. Ctrl-C stops both.

    \b
    Examples:
      arkor dev
      arkor dev --port 4100 --cloud-port 9000
      ARKOR_CLOUD_API_URL=https://arkor.internal arkor dev
    """
    from arkor.studio.config import StudioConfig
    from arkor.studio.launcher import serve_studio
    from arkor.studio.ports import PortInUseError, bind_studio_socket

    try:
        sock = bind_studio_socket(port, warn=warn)
    except PortInUseError as exc:
        fail(str(exc))
    external = external_cloud_url(cloud_port)
    cloud = None
    if external is None:
        cloud_url, cloud = _start_cloud(cloud_port)
    else:
        cloud_url = external
    _sign_in(cloud_url)
    config = StudioConfig(cwd=Path.cwd(), cloud_url=None if external else cloud_url)

    def ready(url: str) -> None:
        console.print(f"Arkor Studio running on {url}")
        where = "external" if external else "local"
        console.print(f"Arkor cloud API ({where}): {cloud_url}")
        if open_browser:
            webbrowser.open(url)

    def stopped() -> None:
        if cloud is not None:
            cloud.stop()  # type: ignore[attr-defined]

    serve_studio(config, sock, on_ready=ready, on_exit=stopped)
