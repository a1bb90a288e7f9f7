"""``arkor login``, ``arkor logout`` and ``arkor whoami``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from arkor.cli.output import cloud_errors, confirm_or_fail, console, fail, print_json, warn
from arkor.cli.session import NOT_SIGNED_IN, open_session
from arkor.contract.models import SIGNUP_DISABLED, SIGNUP_INVITE
from arkor.sdk import (
    TOKEN_ENV,
    AnonymousCredentials,
    AnyCredentials,
    CloudApiClient,
    CloudApiError,
    TokenCredentials,
    credentials_path,
    default_arkor_cloud_api_url,
    delete_credentials,
    ensure_credentials,
    env_credentials,
    read_credentials,
    write_credentials,
)

INVITE_ONLY = (
    "The control plane at {url} signs people up by invite only. Ask its operator for an "
    "invite code and run `arkor login --invite CODE`, or for a token: `arkor login --token "
    "TOKEN`."
)
NO_SIGNUP = (
    "The control plane at {url} does not sign people up. Ask its operator to create your user "
    "(`arkor cloud users create EMAIL`) and run `arkor login --token TOKEN` with its token."
)


def login(
    anonymous: Annotated[
        bool, typer.Option("--anonymous", help="Sign in with a new anonymous identity.")
    ] = False,
    oauth: Annotated[bool, typer.Option("--oauth", help="Sign in through the browser.")] = False,
    invite: Annotated[str | None, typer.Option(
        "--invite", metavar="CODE", help="Join with an invite code from the operator.")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", metavar="TOKEN",
        help="Sign in with a personal access token (- reads it from stdin).")] = None,
    email: Annotated[str | None, typer.Option(
        help="Your email, recorded with --invite.")] = None,
    name: Annotated[str | None, typer.Option(help="Your name, recorded with --invite.")] = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Replace existing credentials.")
    ] = False,
) -> None:
    """Sign in to the control plane and save credentials.

    \b
    Examples:
      arkor login --anonymous
      arkor login --invite arkor_inv_... --email me@example.com
      arkor login --token arkor_pat_...
      ARKOR_CLOUD_API_URL=https://arkor.internal arkor login --token -  < token.txt

    Without an option, signs in the way the server allows (anonymously where it may).
    Credentials go to ~/.arkor/credentials.json (mode 0600; $ARKOR_HOME moves it). In CI,
    set ARKOR_TOKEN instead: it is used without a file.
    """
    if sum(map(bool, (anonymous, oauth, invite, token))) > 1:
        fail("Pass only one of --anonymous, --oauth, --invite and --token.")
    if env_credentials() is not None:
        fail(f"{TOKEN_ENV} is set, so it is what every command uses; unset it to sign in "
             "with saved credentials.")
    existing = read_credentials()
    url = default_arkor_cloud_api_url(None if force else existing)
    if existing is not None and not force:
        console.print(
            f"Already signed in ({_describe(existing)}) at "
            f"{default_arkor_cloud_api_url(existing)}. "
            "Pass --force to replace these credentials."
        )
        return
    with cloud_errors():
        if invite is not None or token is not None:
            saved = (_join(url, invite, email, name) if invite is not None
                     else _with_token(url, token or ""))
            _replace_credentials(existing, saved)
            console.print(f"Signed in {_describe(saved)} at {url}.")
            console.print(f"Credentials saved to {credentials_path()}")
            return
        if oauth:
            with CloudApiClient(base_url=url) as client:
                config = client.get_cli_auth_config()
            if not config.oauth_available:
                fail(f"The control plane at {url} does not offer OAuth sign-in. "
                     "Use `arkor login --anonymous`.")
            fail("OAuth sign-in is not supported by this CLI yet. Use `arkor login --anonymous`.")
        if not anonymous:
            with CloudApiClient(base_url=url) as client:
                policy = client.get_cli_auth_config().signup
            if policy in (SIGNUP_INVITE, SIGNUP_DISABLED):
                fail((INVITE_ONLY if policy == SIGNUP_INVITE else NO_SIGNUP).format(url=url))
        _replace_credentials(existing, None)
        credentials = ensure_credentials(base_url=url)
    console.print(f"Signed in {_describe(credentials)} at {url}.")
    console.print(f"Credentials saved to {credentials_path()}")


def _replace_credentials(existing: AnyCredentials | None, new: AnyCredentials | None) -> None:
    """Remove the old credentials file (saying so when it was unreadable), write ``new``."""
    if existing is None and credentials_path().exists():  # there, but unreadable
        warn(f"{credentials_path()} could not be parsed and is being replaced.")
    delete_credentials()
    if new is not None:
        write_credentials(new)


def _join(url: str, code: str, email: str | None, name: str | None) -> TokenCredentials:
    with CloudApiClient(base_url=url) as client:
        joined = client.accept_invite(code.strip(), email=email, name=name)
    return TokenCredentials(token=joined.token.plaintext, arkor_cloud_api_url=url,
                            org_slug=joined.org.slug, email=joined.user.email)


def _with_token(url: str, token: str) -> TokenCredentials:
    token = (sys.stdin.readline() if token == "-" else token).strip()
    if not token:
        fail("No token given. Pass --token TOKEN (or --token - and the token on stdin).")
    with CloudApiClient(base_url=url, token=token) as client:
        me = client.get_me()
    return TokenCredentials(token=token, arkor_cloud_api_url=url, email=me.user.email,
                            org_slug=me.orgs[0].slug if me.orgs else None)


def logout(
    force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask to confirm.")] = False,
) -> None:
    """Revoke the saved token on the server and delete the saved credentials.

    An anonymous identity cannot be recovered once its token is gone: the org, projects and
    deployments it owns stay on the server but nobody can manage them.
    """
    credentials = read_credentials(credentials_path())
    if credentials is None and not credentials_path().exists():
        if env_credentials() is not None:
            console.print(f"Signed in through {TOKEN_ENV}, not a file: unset it (and revoke "
                          "the token with `arkor tokens revoke ID` if it is no longer needed).")
            return
        console.print("Not signed in; nothing to do.")
        return
    if isinstance(credentials, AnonymousCredentials):
        warn(
            f"You are signed in anonymously (org {credentials.org_slug}). Logging out "
            "discards the only copy of this identity's token."
        )
    confirm_or_fail("Delete your Arkor credentials?", assume_yes=force, flag="--force")
    if credentials is not None:
        _revoke_on_server(credentials)
    delete_credentials()
    console.print("Logged out.")


def _revoke_on_server(credentials: AnyCredentials) -> None:
    url = default_arkor_cloud_api_url(credentials)
    try:
        with CloudApiClient(base_url=url, credentials=credentials) as client:
            current = [t for t in client.list_access_tokens() if t.current]
            for token in current:
                client.revoke_access_token(token.id)
    except CloudApiError as exc:
        if exc.status == 401:  # already revoked, expired or its user disabled
            return
        warn(f"Could not revoke the token at {url} ({exc.message}); it keeps working there "
             "until it expires or is revoked (`arkor tokens revoke ID`).")


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
    orgs = [f"{o.slug} ({o.role})" if o.role else o.slug for o in me.orgs]
    console.print(f"Orgs:  {', '.join(orgs) or '(none)'}")


def _describe(credentials: object) -> str:
    if isinstance(credentials, AnonymousCredentials):
        return f"anonymously as org {credentials.org_slug}"
    if isinstance(credentials, TokenCredentials):
        who = credentials.email or "your user"
        return f"as {who} with a token" + (f" (org {credentials.org_slug})"
                                           if credentials.org_slug else "")
    return "with OAuth"
