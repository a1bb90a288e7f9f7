"""``arkor dev`` as a process: ready line, token file lifecycle, ports, external cloud, and
``arkor dev --agent`` (its three stdout lines, the session file, ``/api/status``, reuse)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

from arkor.studio.session_file import write_session
from tests.servers import free_port

ARKOR = str(Path(sys.executable).parent / "arkor")
AGENT_LINE = re.compile(r"^(ARKOR_STUDIO_URL|ARKOR_STUDIO_SESSION|ARKOR_STUDIO_PID)=(.+)$")


def start(args: list[str], env_extra: dict[str, str]) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **env_extra}
    return subprocess.Popen([ARKOR, "dev", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_pinned_port_in_use_is_a_hard_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([ARKOR, "dev", "--port", str(port)], capture_output=True,
                                text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 1
    assert f"Port {port} is in use" in result.stderr


def test_external_cloud_serves_the_studio_and_cleans_up_its_token(cloud) -> None:
    home = Path(os.environ["ARKOR_HOME"])
    port = free_port()
    process = start(["--port", str(port)], {"ARKOR_CLOUD_API_URL": cloud.url})
    lines = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Arkor cloud API" in line:
                break
        assert lines[0].strip() == f"Arkor Studio running on http://localhost:{port}"
        assert lines[1].strip() == f"Arkor cloud API (external): {cloud.url}"
        token = (home / "studio-token").read_text()
        assert (home / "studio-token").stat().st_mode & 0o777 == 0o600
        page = httpx.get(f"http://localhost:{port}/").text
        assert f'<meta name="arkor-studio-token" content="{token}">' in page
        creds = httpx.get(f"http://127.0.0.1:{port}/api/credentials",
                          headers={"X-Arkor-Studio-Token": token}).json()
        assert creds["baseUrl"] == cloud.url and creds["mode"] == "anon"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    deadline = time.monotonic() + 5
    while (home / "studio-token").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (home / "studio-token").exists()


def start_agent(args: list[str], env_extra: dict[str, str], stderr: IO[str]
                ) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """``arkor dev --agent`` under umask 000 (so the modes are the code's, not the umask's),
    and the three lines it prints on stdout once the Studio answers."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **env_extra}
    process = subprocess.Popen(["sh", "-c", 'umask 000 && exec "$0" dev --agent "$@"', ARKOR,
                                *args], env=env, stdout=subprocess.PIPE, stderr=stderr,
                               text=True)
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(3)]
    matches = [AGENT_LINE.match(line.rstrip("\n")) for line in lines]
    assert all(matches), lines
    return process, {m.group(1): m.group(2) for m in matches if m}


def wait_until_gone(path: Path) -> bool:
    deadline = time.monotonic() + 5
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not path.exists()


def test_agent_mode_prints_three_lines_and_writes_a_private_session_file(
        cloud, tmp_path: Path) -> None:
    cwd = Path.cwd()
    port = free_port()
    with (tmp_path / "stderr.txt").open("w+") as stderr:
        process, lines = start_agent(["--port", str(port)], {"ARKOR_CLOUD_API_URL": cloud.url},
                                     stderr)
        try:
            url = f"http://127.0.0.1:{port}"
            session = Path(lines["ARKOR_STUDIO_SESSION"])
            assert list(lines) == ["ARKOR_STUDIO_URL", "ARKOR_STUDIO_SESSION",
                                   "ARKOR_STUDIO_PID"]
            assert lines["ARKOR_STUDIO_URL"] == url
            assert lines["ARKOR_STUDIO_PID"] == str(process.pid)
            assert session.parent == cwd / ".arkor" / "agent"
            assert re.fullmatch(rf"session-{process.pid}-[0-9a-f]{{32}}\.json", session.name)
            for directory in (cwd / ".arkor", session.parent):
                assert directory.stat().st_mode & 0o777 == 0o700, directory
            assert session.stat().st_mode & 0o777 == 0o600
            saved = json.loads(session.read_text())
            assert saved == {"token": saved["token"], "url": url, "port": port,
                             "pid": process.pid}

            status = httpx.get(f"{url}/api/status")
            assert status.status_code == 200
            assert status.json() == {
                "status": "ok", "version": status.json()["version"], "mode": "agent",
                "url": url, "pid": process.pid, "cwd": str(cwd),
                "endpoints": {"studio": url, "cloud": cloud.url}}
            credentials = json.loads((Path(os.environ["ARKOR_HOME"]) / "credentials.json")
                                     .read_text())
            assert saved["token"] not in status.text
            assert credentials["token"] not in status.text
            foreign = httpx.get(f"{url}/api/status", headers={"Host": "evil.example.com"})
            assert (foreign.status_code, foreign.json()) == (
                403, {"error": "Studio API is loopback-only"})
            assert httpx.get(f"{url}/api/jobs").status_code == 403
            jobs = httpx.get(f"{url}/api/jobs", headers={"X-Arkor-Studio-Token": saved["token"]})
            assert jobs.status_code == 200
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        assert process.stdout is not None
        assert process.stdout.read() == ""  # the three lines were all of stdout
        stderr.seek(0)
        assert f"Arkor Studio running on http://localhost:{port}" in stderr.read()
    assert wait_until_gone(session)
    assert not (Path(os.environ["ARKOR_HOME"]) / "studio-token").exists()


def test_a_second_start_reports_the_running_studio_and_exits_0(cloud, tmp_path: Path) -> None:
    cwd = Path.cwd()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = write_session(cwd, token="s" * 43, url="http://127.0.0.1:9", port=9, pid=dead.pid)
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "ARKOR_CLOUD_API_URL": cloud.url}
    port = free_port()
    with (tmp_path / "stderr.txt").open("w") as stderr:
        process, lines = start_agent(["--port", str(port)], {"ARKOR_CLOUD_API_URL": cloud.url},
                                     stderr)
        try:
            assert not stale.path.exists()
            session = Path(lines["ARKOR_STUDIO_SESSION"])
            again = subprocess.run([ARKOR, "dev", "--agent"], capture_output=True, text=True,
                                   timeout=60, env=env)
            assert again.returncode == 0, again.stderr
            assert again.stdout.splitlines() == [f"{name}={value}"
                                                 for name, value in lines.items()]
            assert f"already running for {cwd}" in again.stderr
            person = subprocess.run([ARKOR, "dev"], capture_output=True, text=True, timeout=60,
                                    env=env)
            assert person.returncode == 0, person.stderr
            assert person.stdout.strip() == (f"Arkor Studio is already running for {cwd} on "
                                             f"http://localhost:{port} (pid {process.pid})")
            assert list(session.parent.iterdir()) == [session]
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
    assert wait_until_gone(session)


@pytest.mark.parametrize("given", ["0x50", "+80", " 80", "080", "0", "65536", "-1", "80.0"])
def test_a_port_that_is_not_plain_decimal_is_refused(given: str) -> None:
    result = subprocess.run([ARKOR, "dev", "--agent", f"--port={given}"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "NO_COLOR": "1",
                                                        "COLUMNS": "200"})
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{given!r} is not a port number" in result.stderr
    assert "plain decimal digits" in result.stderr
    assert not (Path.cwd() / ".arkor").exists()


def test_a_cloud_port_that_is_not_plain_decimal_is_refused() -> None:
    result = subprocess.run([ARKOR, "dev", "--cloud-port", "0x2000"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "NO_COLOR": "1",
                                                        "COLUMNS": "200"})
    assert result.returncode == 2
    assert "'0x2000' is not a port number" in result.stderr
