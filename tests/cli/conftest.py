"""The CLI as a test drives it: in-process, against the module's live server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from arkor.cli.main import app

Run = Callable[..., Any]


def cli_runner() -> Run:
    """``run(*args, code=0)``: invoke the CLI and check its exit code."""
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    return run


@pytest.fixture
def arkor(cloud: Any, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", cloud.url)
    monkeypatch.setenv("COLUMNS", "220")
    return cli_runner()
