"""How the CLI talks to people (Rich tables) and scripts (``--json``), and how it fails."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console

from arkor.sdk import CloudApiError

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]Error:[/red] {message}", markup=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err_console.print(f"[yellow]Warning:[/yellow] {message}", markup=True)


@contextmanager
def cloud_errors() -> Iterator[None]:
    """Turn an SDK error into one line on stderr and a non-zero exit."""
    try:
        yield
    except CloudApiError as exc:
        fail(exc.message)


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2) + "\n")


def confirm_or_fail(question: str, *, assume_yes: bool, flag: str = "--yes") -> None:
    if assume_yes:
        return
    if not sys.stdin.isatty():
        fail(f"{question} Refusing without a terminal to confirm; pass {flag} to proceed.")
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)
