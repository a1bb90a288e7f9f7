"""``arkor tokens create|list|revoke``: your personal access tokens."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from arkor.cli.output import cloud_errors, console, err_console, print_json
from arkor.cli.session import open_session

app = typer.Typer(help="Create, list and revoke your personal access tokens.",
                  no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("create")
def tokens_create(
    name: Annotated[str, typer.Argument(help="What the token is for, e.g. ci (1-80 chars).")],
    expires_in_days: Annotated[int | None, typer.Option(
        help="Days until it stops working (default: never).")] = None,
    as_json: Json = False,
) -> None:
    """Create a personal access token. It is printed once: store it now.

    \b
    Examples:
      arkor tokens create ci --expires-in-days 90
      ARKOR_TOKEN=arkor_pat_... arkor endpoints list   # use it in CI
    """
    session = open_session()
    with cloud_errors():
        token = session.client.create_access_token(name=name, expires_in_days=expires_in_days)
    session.close()
    err_console.print("[yellow]Copy this token now. It cannot be shown again.[/yellow]")
    if as_json:
        print_json({**token.to_wire(), "plaintext": token.plaintext})
        return
    expiry = f", expires {token.expires_at}" if token.expires_at else ""
    console.print(f"Token {token.name!r} ({token.id}{expiry}):")
    console.print(token.plaintext, markup=False)


@app.command("list")
def tokens_list(as_json: Json = False) -> None:
    """List your tokens that still work (never their secrets); * marks the one in use."""
    session = open_session()
    with cloud_errors():
        tokens = session.client.list_access_tokens()
    session.close()
    if as_json:
        print_json({"tokens": tokens})
        return
    table = Table("", "Id", "Name", "Prefix", "Expires", "Last used", "Created")
    for token in tokens:
        table.add_row("*" if token.current else "", token.id, token.name, token.prefix or "",
                      token.expires_at or "never", token.last_used_at or "", token.created_at)
    console.print(table)


@app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="Token id (from `arkor tokens list`).")],
) -> None:
    """Revoke a token: requests with it get 401 from the next one on."""
    session = open_session()
    with cloud_errors():
        session.client.revoke_access_token(token_id)
    session.close()
    console.print(f"Revoked token {token_id}.")
