"""``arkor orgs members list|add|remove|set-role``: who is in an org, and their roles."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from arkor.cli.output import cloud_errors, console, fail, print_json
from arkor.cli.session import CloudSession, open_session
from arkor.contract.models import ORG_ROLES, ROLE_MEMBER, OrgMember

app = typer.Typer(help="Your orgs: their members and roles.", no_args_is_help=True)
members_app = typer.Typer(
    help=f"List an org's members; owners add, remove and re-role them ({', '.join(ORG_ROLES)}).",
    no_args_is_help=True)
app.add_typer(members_app, name="members")

ROLE_HELP = f"One of {', '.join(ORG_ROLES)}."
NO_ORG = "No org to act on: pass --org ORG (`arkor whoami` lists yours)."

Org = Annotated[str | None, typer.Option(
    "--org", help="Org slug (default: the org you signed in to; see `arkor whoami`).")]
Who = Annotated[str, typer.Argument(help="The member's email, or their user id.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _org(session: CloudSession, org: str | None) -> str:
    chosen = org or getattr(session.credentials, "org_slug", None)
    if not chosen:
        fail(NO_ORG)
    return str(chosen)


def _check_role(role: str) -> str:
    if role not in ORG_ROLES:
        fail(f"--role must be one of {', '.join(ORG_ROLES)}, not {role!r}.")
    return role


def _find(session: CloudSession, org: str, who: str) -> OrgMember:
    with cloud_errors():
        listed = session.client.list_members(org).members
    wanted = who.strip().lower()
    for member in listed:
        if member.user_id == who or (member.email or "").lower() == wanted:
            return member
    fail(f"{who} is not a member of org {org!r}; see `arkor orgs members list --org {org}`.")


@members_app.command("list")
def members_list(org: Org = None, as_json: Json = False) -> None:
    """List the org's members and their roles (any member may).

    \b
    Examples:
      arkor orgs members list --org acme
    """
    session = open_session()
    slug = _org(session, org)
    with cloud_errors():
        listed = session.client.list_members(slug)
    session.close()
    if as_json:
        print_json(listed)
        return
    table = Table("Email", "Name", "Role", "User id", "Since")
    for member in listed.members:
        email = member.email or ("(anonymous)" if member.anonymous else "")
        table.add_row(email, member.name or "", member.role, member.user_id, member.created_at)
    console.print(f"Org {listed.org.slug}:")
    console.print(table)


@members_app.command("add")
def members_add(
    email: Annotated[str, typer.Argument(help="Email of a user who already exists here.")],
    org: Org = None,
    role: Annotated[str, typer.Option(help=ROLE_HELP)] = ROLE_MEMBER,
) -> None:
    """Add an existing user to the org (owners only).

    \b
    Examples:
      arkor orgs members add bo@example.com --org acme --role viewer
    """
    session = open_session()
    slug = _org(session, org)
    with cloud_errors():
        member = session.client.add_member(slug, email=email, role=_check_role(role))
    session.close()
    console.print(f"Added {member.email} to org {slug} as {member.role}.")


@members_app.command("set-role")
def members_set_role(
    who: Who,
    role: Annotated[str, typer.Argument(help=ROLE_HELP)],
    org: Org = None,
) -> None:
    """Change a member's role (owners only; the org keeps at least one owner).

    \b
    Examples:
      arkor orgs members set-role bo@example.com owner --org acme
    """
    session = open_session()
    slug = _org(session, org)
    found = _find(session, slug, who)
    with cloud_errors():
        member = session.client.set_member_role(slug, found.user_id, role=_check_role(role))
    session.close()
    console.print(f"{member.email or member.user_id} is now {member.role} in org {slug}.")


@members_app.command("remove")
def members_remove(who: Who, org: Org = None) -> None:
    """Remove a member from the org (owners only; the org keeps at least one owner).

    \b
    Examples:
      arkor orgs members remove bo@example.com --org acme
    """
    session = open_session()
    slug = _org(session, org)
    found = _find(session, slug, who)
    with cloud_errors():
        session.client.remove_member(slug, found.user_id)
    session.close()
    console.print(f"Removed {found.email or found.user_id} from org {slug}.")
