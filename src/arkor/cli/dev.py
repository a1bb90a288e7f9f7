"""``arkor dev``: the Studio in the browser, with the local cloud behind it, in one command.

``arkor dev --agent`` is the same Studio for a coding agent: no browser, and stdout is exactly
:data:`AGENT_LINES` (the Studio's URL, its session file, its pid), once it answers; everything
else goes to stderr. Either way, a Studio already running for this directory is reported and
reused instead of starting a second one.
"""

from __future__ import annotations

import os
import sys
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from arkor.cli.cloud import build_settings
from arkor.cli.output import console, err_console, fail, warn
from arkor.cloud.settings import DEFAULT_PORT, edge_base_url
from arkor.sdk import DEFAULT_CLOUD_API_URL, CloudApiError, ensure_credentials, read_credentials
from arkor.studio.ports import parse_port

if TYPE_CHECKING:
    from arkor.studio.session_file import StudioSession

AGENT_LINES = ("ARKOR_STUDIO_URL", "ARKOR_STUDIO_SESSION", "ARKOR_STUDIO_PID")
Say = Callable[[str], None]


def port_option(text: str | int) -> int:
    """``--port`` and ``--cloud-port`` as typed (a default arrives as the int it is)."""
    if isinstance(text, int):
        return text
    try:
        return parse_port(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def browser_url(port: int) -> str:
    """What a person is shown and the browser opens (the pages' storage belongs to this origin)."""
    return f"http://localhost:{port}"


def print_agent_lines(session: StudioSession) -> None:
    """The three lines a coding agent reads: plain text on stdout, flushed at once."""
    values = (session.url, str(session.path), str(session.pid))
    for name, value in zip(AGENT_LINES, values, strict=True):
        sys.stdout.write(f"{name}={value}\n")
    sys.stdout.flush()


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


def _start_cloud(cloud_port: int, say: Say) -> tuple[str, object | None]:
    from arkor.studio.embedded_cloud import EmbeddedCloud, is_arkor_cloud
    from arkor.studio.ports import port_is_free

    url = f"http://127.0.0.1:{cloud_port}"
    if not port_is_free(cloud_port):
        if is_arkor_cloud(url):
            say(f"Reusing the Arkor cloud already running on {url}")
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


def _already_running(cwd: Path, *, agent: bool, open_browser: bool) -> bool:
    """Report the Studio already running for ``cwd``, if there is one (stale session files
    are removed on the way)."""
    from arkor.studio.session_file import find_running_studio

    running = find_running_studio(cwd)
    if running is None:
        return False
    if agent:
        err_console.print(f"Arkor Studio is already running for {cwd} (pid {running.pid}).",
                          markup=False)
        print_agent_lines(running)
        return True
    url = browser_url(running.port)
    console.print(f"Arkor Studio is already running for {cwd} on {url} (pid {running.pid})",
                  markup=False)
    if open_browser:
        webbrowser.open(url)
    return True


def dev(
    port: Annotated[int | None, typer.Option(
        "--port", "-p", parser=port_option, metavar="PORT",
        help="Studio port on 127.0.0.1, plain decimal 1-65535 (default 4000, or the next "
        "free one up to 4009).", show_default=False)] = None,
    cloud_port: Annotated[int, typer.Option(
        "--cloud-port", parser=port_option, metavar="PORT",
        help="Port of the local cloud (control plane and deployment URLs); "
        "an Arkor cloud already running there is reused.")] = DEFAULT_PORT,
    open_browser: Annotated[bool, typer.Option(
        "--open", help="Open the Studio in the default browser.")] = False,
    agent: Annotated[bool, typer.Option(
        "--agent", help="For coding agents: no browser; stdout is three lines, "
        "ARKOR_STUDIO_URL=, ARKOR_STUDIO_SESSION= (a 0600 JSON file with the Studio token) "
        "and ARKOR_STUDIO_PID=, once the Studio answers; logs go to stderr.")] = False,
) -> None:
    """Open Arkor Studio on this machine, with the local cloud behind it.

    The local cloud (control plane, deployment URLs, engine and training runner, SQLite
    under ~/.arkor/cloud) starts in the same process unless ARKOR_CLOUD_API_URL or your
    credentials point at another control plane. Ctrl-C stops both.

    Each launch writes .arkor/agent/session-<pid>-<uuid>.json in this directory (removed when
    it stops). If a Studio is already running for this directory, its URL is printed and the
    command exits 0 without starting another.

    \b
    Examples:
      arkor dev
      arkor dev --port 4100 --cloud-port 9000
      arkor dev --agent > studio.env &
      ARKOR_CLOUD_API_URL=https://arkor.internal arkor dev
    """
    from arkor.studio.config import StudioConfig
    from arkor.studio.launcher import serve_studio
    from arkor.studio.ports import PortInUseError, bind_studio_socket, studio_url
    from arkor.studio.session_file import prepare_session_dir

    if agent and open_browser:
        fail("--agent opens no browser; drop --open.")
    cwd = Path.cwd()
    if _already_running(cwd, agent=agent, open_browser=open_browser):
        return
    say: Say = (lambda text: err_console.print(text, markup=False)) if agent \
        else (lambda text: console.print(text, markup=False))
    session_file = True
    try:
        prepare_session_dir(cwd)
    except OSError as exc:
        problem = f"Could not create .arkor/agent in {cwd} ({exc.strerror or exc})"
        if agent:
            fail(f"{problem}; run arkor dev --agent from a project directory you can write to.")
        warn(f"{problem}; tools will not find this Studio.")
        session_file = False
    try:
        sock = bind_studio_socket(port, warn=warn)
    except PortInUseError as exc:
        fail(str(exc))
    studio_port = sock.getsockname()[1]
    external = external_cloud_url(cloud_port)
    cloud = None
    edge_url = None
    if external is None:
        cloud_url, cloud = _start_cloud(cloud_port, say)
        if cloud is not None:
            edge_url = edge_base_url(build_settings(), cloud_url, "{slug}")
    else:
        cloud_url = external
    _sign_in(cloud_url)
    config = StudioConfig(cwd=cwd, cloud_url=None if external else cloud_url,
                          mode="agent" if agent else "interactive",
                          url=studio_url(studio_port), edge_url=edge_url)

    def ready(url: str, session: StudioSession | None) -> None:
        say(f"Arkor Studio running on {browser_url(studio_port)}")
        where = "external" if external else "local"
        say(f"Arkor cloud API ({where}): {cloud_url}")
        if agent and session is not None:
            print_agent_lines(session)
        if open_browser:
            webbrowser.open(browser_url(studio_port))

    def stopped() -> None:
        if cloud is not None:
            cloud.stop()  # type: ignore[attr-defined]

    serve_studio(config, sock, on_ready=ready, on_exit=stopped, session_file=session_file)
