"""``arkor dev`` as a process: ready line, token file lifecycle, ports, external cloud."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.servers import free_port

ARKOR = str(Path(sys.executable).parent / "arkor")


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
