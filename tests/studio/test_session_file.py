"""``.arkor/agent`` session files: written private, read only when they point at a loopback
Studio, stale ones removed, live ones kept (``arkor dev`` drives it in test_dev_command.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from arkor.studio.session_file import (
    find_running_studio,
    prepare_session_dir,
    read_session,
    remove_session,
    write_session,
)
from tests.servers import free_port

TOKEN = "t" * 43


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_an_existing_session_directory_is_tightened(tmp_path: Path) -> None:
    (tmp_path / ".arkor" / "agent").mkdir(parents=True, mode=0o755)
    os.chmod(tmp_path / ".arkor" / "agent", 0o755)
    assert prepare_session_dir(tmp_path).stat().st_mode & 0o777 == 0o700


def test_written_session_reads_back_and_is_removed(tmp_path: Path) -> None:
    session = write_session(tmp_path, token=TOKEN, url="http://127.0.0.1:4000", port=4000)
    assert session.path.stat().st_mode & 0o777 == 0o600
    assert read_session(session.path) == session
    assert TOKEN not in repr(session)
    remove_session(session)
    remove_session(session)  # already gone: nothing to do
    assert list(session.path.parent.iterdir()) == []


@pytest.mark.parametrize("body", [
    {"token": TOKEN, "url": "http://evil.example.com:4000", "port": 4000, "pid": 1},
    {"token": TOKEN, "url": "http://127.0.0.1:4001", "port": 4000, "pid": 1},
    {"token": TOKEN, "url": "http://127.0.0.1:4000", "port": "4000", "pid": 1},
    {"token": TOKEN, "url": "http://127.0.0.1:4000", "port": 4000, "pid": 0},
    {"url": "http://127.0.0.1:4000", "port": 4000, "pid": 1},
    ["not", "an", "object"],
])
def test_a_file_that_is_not_a_loopback_session_is_ignored(tmp_path: Path, body: object) -> None:
    path = prepare_session_dir(tmp_path) / "session-1-x.json"
    path.write_text(json.dumps(body))
    assert read_session(path) is None
    assert find_running_studio(tmp_path) is None
    assert path.exists()


def test_a_stale_session_is_removed_and_a_silent_live_one_kept(tmp_path: Path) -> None:
    port = free_port()
    stale = write_session(tmp_path, token=TOKEN, url=f"http://127.0.0.1:{port}", port=port,
                          pid=dead_pid())
    silent = write_session(tmp_path, token=TOKEN, url=f"http://127.0.0.1:{port}", port=port)
    assert find_running_studio(tmp_path) is None
    assert not stale.path.exists()
    assert silent.path.exists()  # alive (this process) but no Studio answers: left alone


def test_no_session_directory_means_no_running_studio(tmp_path: Path) -> None:
    assert find_running_studio(tmp_path) is None
    assert not (tmp_path / ".arkor").exists()
