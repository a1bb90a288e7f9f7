"""Render docs/cli.md from the command tree, so the manual cannot drift from the code.

Regenerate with ``python -m arkor.cli.reference > docs/cli.md`` (a test checks it is current).
"""

from __future__ import annotations

import inspect
from typing import Any

import typer

HEADER = (
    "# `arkor` CLI reference\n\n"
    "Generated from the command definitions by `python -m arkor.cli.reference > docs/cli.md`;"
    " `arkor COMMAND --help` shows the same text.\n"
)


def _walk(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    found = [(path, command)]
    if hasattr(command, "list_commands"):
        for name in command.list_commands(None):
            sub = command.get_command(None, name)
            if sub is not None and not sub.hidden:
                found += _walk(sub, [*path, name])
    return found


def _param_row(param: Any) -> str | None:
    if param.param_type_name == "argument":
        name = (param.name or '').upper()
        return f"| `{name}` | argument | {getattr(param, 'help', '') or ''} |"
    if param.param_type_name != "option" or param.hidden or param.name == "help":
        return None
    if param.name in ("install_completion", "show_completion"):
        return None
    names = " / ".join(f"`{o}`" for o in (*param.opts, *param.secondary_opts))
    default = ""
    if param.default not in (None, False, (), []) and not param.is_flag:
        default = f" (default: `{param.default}`)"
    return f"| {names} | option | {(param.help or '').replace('|', '/')}{default} |"


def _fence_examples(text: str) -> str:
    """Indented lines under "Examples:" become a fenced shell block."""
    out: list[str] = []
    fenced = False
    for line in text.splitlines():
        indented = line.startswith("  ") and bool(line.strip())
        if indented and not fenced and out and out[-1].rstrip().endswith("Examples:"):
            out.append("```bash")
            fenced = True
        elif fenced and not indented:
            out.append("```")
            fenced = False
        out.append(line.strip() if fenced else line)
    if fenced:
        out.append("```")
    return "\n".join(out)


def render_cli_reference() -> str:
    from arkor.cli.main import app

    root = typer.main.get_command(app)
    parts = [HEADER]
    for path, command in _walk(root, ["arkor"]):
        parts.append(f"\n## `{' '.join(path)}`\n")
        help_text = inspect.cleandoc(command.help or "").replace("\b\n", "")
        if help_text:
            parts.append("\n" + _fence_examples(help_text.strip()) + "\n")
        rows = [r for r in (_param_row(p) for p in command.params) if r]
        if rows:
            parts.append("\n| Name | Kind | Help |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    return "".join(parts)


if __name__ == "__main__":
    print(render_cli_reference(), end="")
