"""``.arkor/agent/session-<pid>-<uuid>.json``: how a tool finds the Studio running for a
project directory.

Every ``arkor dev`` writes one in the project directory once the Studio answers, holding
``{token, url, port, pid}``, and removes it when the Studio stops (a normal exit, Ctrl-C,
SIGTERM). The directory is created 0700 and the file 0600 (written under a temporary name
beside it, then renamed), so no other account ever sees the token and no reader sees half a
file. A session is *running* when its pid is alive and its ``GET /api/status`` answers for
that pid and this directory; one whose pid is gone is stale (the Studio was killed) and is
removed by the next launch that looks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from arkor.sdk import write_private_file
from arkor.studio.guards import STATUS_PATH

SESSION_DIR = Path(".arkor") / "agent"
SESSION_GLOB = "session-*.json"
DIR_MODE = 0o700
STATUS_TIMEOUT_S = 2.0
LOOPBACK_URL = re.compile(r"^http://(?:127\.0\.0\.1|localhost):(\d+)$")


@dataclass(frozen=True)
class StudioSession:
    path: Path
    url: str
    port: int
    pid: int
    token: str = field(repr=False)


def session_dir(cwd: Path) -> Path:
    return cwd / SESSION_DIR


def prepare_session_dir(cwd: Path) -> Path:
    """``.arkor/agent`` in ``cwd``: each directory created 0700 from the start (``mkdir -p``
    style), and the session directory tightened to 0700 when it already existed."""
    path = session_dir(cwd)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIR_MODE)
        os.chmod(directory, DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def write_session(cwd: Path, *, token: str, url: str, port: int,
                  pid: int | None = None) -> StudioSession:
    pid = os.getpid() if pid is None else pid
    path = prepare_session_dir(cwd) / f"session-{pid}-{uuid.uuid4().hex}.json"
    write_private_file(path, json.dumps({"token": token, "url": url, "port": port,
                                         "pid": pid}, indent=2) + "\n")
    return StudioSession(path=path, url=url, port=port, pid=pid, token=token)


def remove_session(session: StudioSession) -> None:
    with contextlib.suppress(FileNotFoundError):
        session.path.unlink()


def read_session(path: Path) -> StudioSession | None:
    """The session in ``path``, or ``None`` for a file that is not one: unreadable, another
    account's, or not a loopback Studio (a session file is never trusted to send us
    elsewhere)."""
    try:
        if path.stat().st_uid != os.getuid():
            return None
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        token, url, port, pid = data["token"], data["url"], data["port"], data["pid"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not (isinstance(token, str) and isinstance(url, str) and type(port) is int
            and type(pid) is int and pid > 0):
        return None
    match = LOOPBACK_URL.match(url)
    if match is None or int(match.group(1)) != port:
        return None
    return StudioSession(path=path, url=url, port=port, pid=pid, token=token)


def pid_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another account's
        return True
    return True


def answers_status(session: StudioSession, cwd: Path) -> bool:
    """Whether the Studio at ``session.url`` is that session's process, serving ``cwd``."""
    try:
        response = httpx.get(session.url + STATUS_PATH, timeout=STATUS_TIMEOUT_S,
                             trust_env=False)
        body = response.json()
        return bool(response.status_code == 200 and body["status"] == "ok"
                    and body["pid"] == session.pid
                    and Path(body["cwd"]).resolve() == cwd.resolve())
    except (httpx.HTTPError, ValueError, TypeError, KeyError):
        return False


def find_running_studio(cwd: Path) -> StudioSession | None:
    """The Studio running for ``cwd``, if one is; stale session files are removed."""
    for path in sorted(session_dir(cwd).glob(SESSION_GLOB)):
        session = read_session(path)
        if session is None:
            continue
        if not pid_is_alive(session.pid):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        if answers_status(session, cwd):
            return session
    return None
