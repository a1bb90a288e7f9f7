"""The ``arkor`` command: one module per group, wired together here."""

from __future__ import annotations

from typing import Annotated

import typer

from arkor._version import SDK_VERSION
from arkor.cli import (
    auth,
    cloud,
    dev,
    domains,
    endpoints,
    jobs,
    operator,
    orgs,
    runs,
    tokens,
    train,
    usage,
)

app = typer.Typer(
    name="arkor",
    help="Arkor: fine-tuned adapters behind their own OpenAI-compatible URL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"arkor {SDK_VERSION}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", "-V", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    pass


app.command()(dev.dev)
app.command()(auth.login)
app.command()(auth.logout)
app.command()(auth.whoami)
app.add_typer(tokens.app, name="tokens")
app.add_typer(orgs.app, name="orgs")
cloud.app.add_typer(operator.users_app, name="users")
cloud.app.add_typer(operator.invites_app, name="invites")
app.add_typer(cloud.app, name="cloud")
app.command()(train.train)
app.add_typer(jobs.app, name="jobs")
endpoints.app.add_typer(runs.app, name="runs")
endpoints.app.add_typer(domains.app, name="domains")
endpoints.app.command("usage")(usage.endpoints_usage)
app.add_typer(endpoints.app, name="endpoints")


def main() -> None:
    app()
