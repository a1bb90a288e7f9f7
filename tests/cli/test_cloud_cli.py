"""``arkor cloud serve`` and ``arkor dev`` as processes: they start, answer, and refuse bad
settings with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from arkor._version import SDK_VERSION
from arkor.cli.main import app
from tests.servers import free_port

ARKOR = str(Path(sys.executable).with_name("arkor"))


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"arkor {SDK_VERSION}"


def test_bad_base_model_is_one_line() -> None:
    result = CliRunner().invoke(app, ["cloud", "serve", "--base-model", "nonsense"])
    assert result.exit_code == 1
    assert "NAME=PATH" in result.stderr


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["cloud", "serve", "--data-dir", str(tmp_path),
                                      "--database-url", "postgresql://nobody@127.0.0.1:9/x"])
    assert result.exit_code == 1
    assert "Could not start the control plane" in result.stderr


def test_serve_process_prints_urls_and_answers(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "ARKOR_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([ARKOR, "cloud", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError("arkor cloud serve did not answer within 30 s")
        spec = httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()
        assert "/v1/endpoints" in spec["paths"]
        assert (tmp_path / "data" / "arkor.sqlite3").exists()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert f"Arkor cloud API:  http://127.0.0.1:{port}" in out
