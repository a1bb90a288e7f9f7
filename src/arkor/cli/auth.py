"""``arkor login``, ``arkor logout`` and ``arkor whoami``."""

from __future__ import annotations

from typing import Annotated

import typer

from arkor.cli.output import cloud_errors, confirm_or_fail, console, fail, print_json, warn
from arkor.cli.session import NOT_SIGNED_IN, open_session
from arkor.sdk import (
    AnonymousCredentials,
    CloudApiClient,
    credentials_path,
    default_arkor_cloud_api_url,
    delete_credentials,
    ensure_credentials,
    read_credentials,
)


def login(
    anonymous: Annotated[
        bool, typer.Option("--anonymous", help="Sign in with a new anonymous identity.")
    ] = False,
    oauth: Annotated[bool, typer.Option("--oauth", help="Sign in through the browser.")] = False,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Replace existing credentials.")
    ] = False,
) -> None:
    """Sign in to the control plane and save credentials.

    \b
    Examples:
      arkor login --anonymous
      ARKOR_CLOUD_API_URL=https://arkor.internal arkor login --anonymous

    Credentials go to ~/.arkor/credentials.json (mode 0600; $ARKOR_HOME moves it).
    """
    if anonymous and oauth:
        fail("Pass either --anonymous or --oauth, not both.")
    existing = read_credentials()
    url = default_arkor_cloud_api_url(None if force else existing)
    with cloud_errors():
        if oauth:
            with CloudApiClient(base_url=url) as client:
                config = client.get_cli_auth_config()
            if not config.oauth_available:
                fail(f"The control plane at {url} does not offer OAuth sign-in. "
                     "Use `arkor login --anonymous`.")
            fail("OAuth sign-in is not supported by this CLI yet. Use `arkor login --anonymous`.")
        if existing is not None and not force:
            console.print(
                f"Already signed in ({_describe(existing)}) at "
                f"{default_arkor_cloud_api_url(existing)}. "
                "Pass --force to replace these credentials."
            )
            return
        if existing is not None:
            delete_credentials()
        elif credentials_path().exists():  # there, but unreadable
            warn(f"{credentials_path()} could not be parsed and is being replaced.")
            delete_credentials()
        credentials = ensure_credentials(base_url=url)
    console.print(f"Signed in {_describe(credentials)} at {url}.")
    console.print(f"Credentials saved to {credentials_path()}")


def logout(
    force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask to confirm.")] = False,
) -> None:
    """Delete the saved credentials.

    An anonymous identity cannot be recovered once its token is gone: the org, projects and
    deployments it owns stay on the server but nobody can manage them.
    """
    credentials = read_credentials()
    if credentials is None and not credentials_path().exists():
        console.print("Not signed in; nothing to do.")
        return
    if isinstance(credentials, AnonymousCredentials):
        warn(
            f"You are signed in anonymously (org {credentials.org_slug}). Logging out "
            "discards the only copy of this identity's token."
        )
    confirm_or_fail("Delete your Arkor credentials?", assume_yes=force, flag="--force")
    delete_credentials()
    console.print("Logged out.")


def whoami(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show who you are signed in as, and your orgs."""
    if read_credentials() is None:
        fail(NOT_SIGNED_IN)
    session = open_session()
    with cloud_errors():
        me = session.client.get_me()
    session.close()
    if as_json:
        print_json({"cloudApiUrl": session.client.base_url, **me.to_wire()})
        return
    kind = "anonymous" if me.user.anonymous else (me.user.email or "signed in")
    console.print(f"User:  {me.user.id} ({kind})")
    console.print(f"Cloud: {session.client.base_url}")
    console.print(f"Orgs:  {', '.join(o.slug for o in me.orgs) or '(none)'}")


def _describe(credentials: object) -> str:
    if isinstance(credentials, AnonymousCredentials):
        return f"anonymously as org {credentials.org_slug}"
    return "with OAuth"
