"""``arkor endpoints domains``: serve a deployment at a domain of your own, once DNS proves it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from arkor.cli.endpoints import Endpoint, Json, Org, Project, find
from arkor.cli.output import cloud_errors, confirm_or_fail, console, fail, print_json
from arkor.cli.session import open_session, resolve_scope
from arkor.contract.domains import DOMAIN_VERIFIED
from arkor.sdk import CustomDomain

app = typer.Typer(
    help=(
        "Serve a deployment at your own domain (api.example.com), once a DNS TXT record "
        "proves the domain is yours.\n\n"
        "\b\nExamples:\n"
        "  arkor endpoints domains add support-bot api.example.com\n"
        "  arkor endpoints domains verify support-bot api.example.com\n"
        "  arkor endpoints domains list support-bot\n"
        "  arkor endpoints domains remove support-bot api.example.com --yes\n\n"
        "Point the domain at the server (CNAME or A record) as well; the server's reverse "
        "proxy gets its certificate once it is verified."
    ),
    no_args_is_help=True,
)
Domain = Annotated[str, typer.Argument(help="The domain, e.g. api.example.com.")]


def show_challenge(domain: CustomDomain) -> None:
    console.print("Create this DNS record, then run `arkor endpoints domains verify`:")
    table = Table("TYPE", "NAME", "VALUE")
    table.add_row("TXT", domain.challenge_record, domain.challenge_value)
    console.print(table)


@app.command("list")
def domains_list(endpoint: Endpoint, org: Org = None, project: Project = None,
                 as_json: Json = False) -> None:
    """List a deployment's custom domains: status, last check, and the TXT record each needs."""
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        domains = session.client.list_domains(find(session, scope, endpoint).id, scope)
    if as_json:
        print_json(domains)
        return
    if not domains:
        console.print("No custom domains yet. Add one: arkor endpoints domains add "
                      f"{endpoint} api.example.com")
        return
    table = Table("DOMAIN", "STATUS", "TXT RECORD", "VALUE", "LAST CHECK", "ERROR")
    for d in domains:
        table.add_row(d.domain, d.status, d.challenge_record, d.challenge_value,
                      d.last_checked_at or "never", d.last_error or "")
    console.print(table)


@app.command("add")
def domains_add(endpoint: Endpoint, domain: Domain, org: Org = None, project: Project = None,
                as_json: Json = False) -> None:
    """Add a custom domain. It is served only once verified: create the TXT record shown."""
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        added = session.client.add_domain(find(session, scope, endpoint).id, scope,
                                          domain=domain)
    if as_json:
        print_json(added)
        return
    console.print(f"Added {added.domain} (pending).")
    show_challenge(added)


@app.command("verify")
def domains_verify(endpoint: Endpoint, domain: Domain, org: Org = None,
                   project: Project = None, as_json: Json = False) -> None:
    """Look the domain's TXT record up now. Exits 1 while it is not verified."""
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        checked = session.client.verify_domain(find(session, scope, endpoint).id, domain,
                                               scope)
    if as_json:
        print_json(checked)
    if checked.status != DOMAIN_VERIFIED:
        if not as_json:
            show_challenge(checked)
        fail(f"{checked.domain} is not verified: {checked.last_error or 'no record yet'}.")
    if not as_json:
        console.print(f"Verified {checked.domain}: it is served from now on.")


@app.command("remove")
def domains_remove(
    endpoint: Endpoint, domain: Domain,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    org: Org = None, project: Project = None,
) -> None:
    """Remove a custom domain: requests for it are refused from the next one on."""
    session = open_session()
    with cloud_errors():
        scope = resolve_scope(session, org, project)
        deployment = find(session, scope, endpoint)
        confirm_or_fail(f"Remove {domain} from {deployment.slug}?", assume_yes=yes)
        session.client.remove_domain(deployment.id, domain, scope)
    console.print(f"Removed {domain}.")
