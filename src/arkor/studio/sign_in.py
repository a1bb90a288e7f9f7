"""What the Studio says when it cannot act for anyone: nobody is signed in on a control plane
that signs nobody up anonymously, or the control plane refused the token it holds.

Both answers are 401 with a message naming the command that fixes it. The Studio never
signs in anonymously over credentials that exist (a refused token stays where it is until
the user replaces it), and it reads credentials on every request, so ``arkor login`` in a
terminal applies on the next one without restarting anything.
"""

from __future__ import annotations

from arkor.contract.models import SIGNUP_DISABLED, SIGNUP_INVITE
from arkor.sdk import credentials_path, env_credentials

PICKED_UP = "The Studio picks the new credentials up by itself."
SIGN_UP_BY_INVITE = (
    "Not signed in, and the control plane at {url} does not sign people up anonymously "
    "(ARKOR_SIGNUP=invite). Ask its operator for an invite code and run `arkor login "
    "--invite CODE`, or for a personal access token and run `arkor login --token TOKEN`. "
    + PICKED_UP
)
NO_SIGN_UP = (
    "Not signed in, and the control plane at {url} does not sign people up "
    "(ARKOR_SIGNUP=disabled). Ask its operator to create your user (`arkor cloud users "
    "create EMAIL`) and run `arkor login --token TOKEN` with its token. " + PICKED_UP
)
FILE_TOKEN_REFUSED = (
    "The control plane at {url} refused the token in {path}: it was revoked or has expired, "
    "or its user was disabled. Sign in again with `arkor login --force --token TOKEN` (or "
    "`--invite CODE`; plain `arkor login --force` where the server allows anonymous "
    "sign-up). " + PICKED_UP
)
ENV_TOKEN_REFUSED = (
    "The control plane at {url} refused the token in ARKOR_TOKEN: it was revoked or has "
    "expired, or its user was disabled. Set ARKOR_TOKEN to a working token (from the "
    "operator, or `arkor tokens create`) and restart `arkor dev`."
)


def not_signed_in(policy: str | None, url: str) -> str | None:
    """How to sign in where the sign-up ``policy`` refuses anonymous identities; ``None``
    where it allows them (the refusal was something else)."""
    if policy == SIGNUP_INVITE:
        return SIGN_UP_BY_INVITE.format(url=url)
    if policy == SIGNUP_DISABLED:
        return NO_SIGN_UP.format(url=url)
    return None


def token_refused(url: str) -> str:
    """How to sign in again once the control plane at ``url`` answered 401 to the token the
    Studio holds: where that token came from decides what to change."""
    if env_credentials() is not None:
        return ENV_TOKEN_REFUSED.format(url=url)
    return FILE_TOKEN_REFUSED.format(url=url, path=credentials_path())
