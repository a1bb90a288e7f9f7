"""The suite runs on pytest-xdist workers (``make test``): what a worker could not use on
this machine still reaches the controller's loud "NOT TESTED" summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_part_missing_in_a_worker_is_reported_at_the_end(tmp_path: Path, workers: str) -> None:
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_sessionfinish, pytest_terminal_summary, "
        "pytest_testnodedown\n")
    (tmp_path / "test_missing.py").write_text(
        "from tests.conftest import note_missing\n\n\n"
        "def test_notes_a_missing_part():\n"
        "    note_missing('The frobnicator', 'apt-get install -y frobnicator')\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", workers],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NOT TESTED: missing on this machine" in result.stdout
    assert ("The frobnicator is missing, so its tests were skipped. "
            "Fix: apt-get install -y frobnicator") in result.stdout
