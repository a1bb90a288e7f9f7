"""``arkor cloud users ...`` and ``arkor cloud invites create``: the operator's commands.

They act on the server's database directly (``ARKOR_DATABASE_URL``, else the SQLite file in
``ARKOR_DATA_DIR``), like ``arkor cloud serve`` does, so they work before the server is up
and need no token. Plaintexts (a user's first token, an invite code) are printed once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from arkor.cli.cloud import build_settings
from arkor.cli.output import console, fail, print_json
from arkor.contract.models import ORG_ROLES, ROLE_MEMBER

users_app = typer.Typer(help="Manage the users of the server this machine runs.",
                        no_args_is_help=True)
invites_app = typer.Typer(help="Invite people to an org of the server this machine runs.",
                          no_args_is_help=True)

DataDir = Annotated[Path | None, typer.Option(
    help="The server's data directory. [env: ARKOR_DATA_DIR]")]
DatabaseUrl = Annotated[str | None, typer.Option(
    help="The server's database URL. [env: ARKOR_DATABASE_URL]")]
Role = Annotated[str, typer.Option(help=f"Role in the org: {', '.join(ORG_ROLES)}.")]


@contextmanager
def operator_session(data_dir: Path | None, database_url: str | None) -> Iterator[Session]:
    """One unit of work on the server's database (migrated first, as the server does);
    a refusal from the store ends the command with its message and nothing written."""
    from arkor.cloud.files import prepare_data_dir
    from arkor.store.db import Database, migrate
    from arkor.store.errors import EmailTaken, Refused

    settings = build_settings(data_dir=data_dir, database_url=database_url)
    try:
        prepare_data_dir(settings)
        db = Database(settings.db_url)
        migrate(db.engine)
    except Exception as exc:  # an unreachable PostgreSQL, an unwritable directory...
        fail(f"Could not open the server's database: {exc}")
    try:
        with db.session() as session:
            yield session
    except (EmailTaken, Refused) as exc:
        fail(str(exc))
    finally:
        db.dispose()


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="The user's email (their name on this server).")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="May use /v1/admin/*.")] = False,
    org: Annotated[str | None, typer.Option(
        help="Make them a member of this org (created when it does not exist); default: "
             "the owner of a new personal org.")] = None,
    role: Role = ROLE_MEMBER,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a user and print their first personal access token (shown once).

    \b
    Examples:
      arkor cloud users create alice@example.com --name Alice --admin --org team --role owner
      arkor cloud users create bob@example.com --org team
    The user signs in with `arkor login --token TOKEN`.
    """
    from arkor.store import users

    with operator_session(data_dir, database_url) as session:
        created = users.create_user(session, email=email, name=name, admin=admin,
                                    org_slug=org, role=role)
        role_in_org = role if org else "owner of a personal org"
        console.print(f"Created user {created.user.email} in org {created.org.slug} as "
                      f"{role_in_org}{' (admin)' if admin else ''}.")
        console.print("Their personal access token (shown once; give it to them):")
        console.print(created.token.plaintext)


@users_app.command("list")
def users_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List the users (anonymous sign-ins are counted, not listed)."""
    from arkor.cloud.dto import admin_user_dto
    from arkor.store import users

    with operator_session(data_dir, database_url) as session:
        rows = [admin_user_dto(u) for u in users.list_users(session)]
        anonymous = users.count_anonymous(session)
    if as_json:
        print_json({"users": rows, "anonymousUsers": anonymous})
        return
    table = Table("Email", "Name", "Admin", "Disabled", "Created", "Id")
    for user in rows:
        table.add_row(user.email or "", user.name or "", "yes" if user.admin else "",
                      "yes" if user.disabled else "", user.created_at, user.id)
    console.print(table)
    console.print(f"Anonymous users: {anonymous}")


@users_app.command("disable")
def users_disable(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Disable a user: their tokens stop working on the next request."""
    from arkor.store import users

    with operator_session(data_dir, database_url) as session:
        user = users.user_by_email(session, email)
        if user is None:
            fail(f"No user with email {email!r} (`arkor cloud users list` shows them).")
        users.disable_user(session, user)
    console.print(f"Disabled {email}; their tokens no longer work.")


@invites_app.command("create")
def invites_create(
    org: Annotated[str, typer.Option(help="The org the invitee joins (must exist).")],
    role: Role = ROLE_MEMBER,
    days: Annotated[int, typer.Option("--expires-in-days", help="Days the code is valid.")] = 7,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a one-time invite code into an org (shown once; only its digest is kept).

    \b
    Examples:
      arkor cloud invites create --org team
      arkor cloud invites create --org team --role viewer --expires-in-days 1
    The invitee runs `arkor login --invite CODE`.
    """
    from arkor.store import invites

    with operator_session(data_dir, database_url) as session:
        created = invites.create_invite(session, org_slug=org, role=role, days=days)
        expires = created.invite.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        console.print(f"Invite into org {created.org.slug} as {role}, valid until {expires} "
                      "(one use; shown once):")
        console.print(created.code)
