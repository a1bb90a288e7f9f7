"""The CLI as a test drives it: in-process, against the module's live server."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from typer.testing import CliRunner

from arkor.cli import output
from arkor.cli.main import app

Run = Callable[..., Any]


def cli_runner() -> Run:
    """``run(*args, code=0)``: invoke the CLI and check its exit code."""
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        with consoles_as_wide_as_columns():
            result = runner.invoke(app, list(args))
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    return run


@contextmanager
def consoles_as_wide_as_columns() -> Iterator[None]:
    """The CLI's consoles as wide as the test's ``COLUMNS`` for one call: rich reads
    ``COLUMNS`` when a console is made, at import, which under pytest-xdist is the worker's
    80 columns, before any test sets its own."""
    consoles = (output.console, output.err_console)
    saved = [console._width for console in consoles]
    columns = os.environ.get("COLUMNS")
    try:
        if columns is not None and columns.isdigit():
            for console in consoles:
                console.width = int(columns)
        yield
    finally:
        for console, width in zip(consoles, saved, strict=True):
            console._width = width


@pytest.fixture
def arkor(cloud: Any, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", cloud.url)
    monkeypatch.setenv("COLUMNS", "220")
    return cli_runner()
