"""``~/.arkor/credentials.json``: who this machine signs in as, and against which cloud.

Reading a missing or unparsable file gives ``None``; any other filesystem error (permission
denied, ...) is raised and the file is never overwritten. Bootstrapping an anonymous identity
replaces a corrupt file with a warning on stderr.

``arkorCloudApiUrl`` records the control plane that issued the token. A client that would
send the token to another origin says so with :class:`TokenOriginWarning` (files written
before the URL was recorded are read as before, and never warn).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, TypeAdapter, ValidationError

from arkor.contract.models import WireModel
from arkor.sdk._files import DEFAULT_CLOUD_API_URL, arkor_home, write_private_file


class AnonymousCredentials(WireModel):
    mode: Literal["anon"] = "anon"
    token: str = Field(repr=False)
    anonymous_id: str
    arkor_cloud_api_url: str | None = None
    org_slug: str

    @property
    def bearer(self) -> str:
        return self.token


class OAuthCredentials(WireModel):
    mode: Literal["oauth"] = "oauth"
    access_token: str = Field(repr=False)
    refresh_token: str = Field(repr=False)
    expires_at: int
    auth0_domain: str
    audience: str
    client_id: str
    arkor_cloud_api_url: str | None = None

    @property
    def bearer(self) -> str:
        return self.access_token


class TokenCredentials(WireModel):
    """A token given to ``arkor login --token`` or received through ``--invite``, or the one
    in ``ARKOR_TOKEN`` (for CI: never written to a file). ``org_slug`` is the org a project
    is set up in when a directory has none yet."""

    mode: Literal["token"] = "token"
    token: str = Field(repr=False)
    arkor_cloud_api_url: str | None = None
    org_slug: str | None = None
    email: str | None = None

    @property
    def bearer(self) -> str:
        return self.token


AnyCredentials = AnonymousCredentials | OAuthCredentials | TokenCredentials
Credentials = Annotated[AnyCredentials, Field(discriminator="mode")]
_CREDENTIALS = TypeAdapter(Credentials)
TOKEN_ENV = "ARKOR_TOKEN"


def credentials_path() -> Path:
    return arkor_home() / "credentials.json"


def env_credentials() -> TokenCredentials | None:
    """``ARKOR_TOKEN`` as credentials, when it is set and not empty."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    return TokenCredentials(token=token) if token else None


def read_credentials(path: Path | None = None) -> AnyCredentials | None:
    """``ARKOR_TOKEN`` when set (and no ``path`` is given), else the credentials file."""
    if path is None and (from_env := env_credentials()) is not None:
        return from_env
    path = path or credentials_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return _CREDENTIALS.validate_python(json.loads(text))
    except (json.JSONDecodeError, ValidationError):
        return None


def credentials_file_is_corrupt(path: Path | None = None) -> bool:
    path = path or credentials_path()
    return path.exists() and read_credentials(path) is None


def write_credentials(credentials: AnyCredentials, path: Path | None = None) -> Path:
    path = path or credentials_path()
    body = credentials.model_dump(mode="json", by_alias=True, exclude_none=True)
    write_private_file(path, json.dumps(body, indent=2))
    return path


def delete_credentials(path: Path | None = None) -> bool:
    path = path or credentials_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def warn_replacing_corrupt(path: Path) -> None:
    print(
        f"arkor: warning: {path} could not be parsed and is being replaced. "
        "Run `arkor login` to sign in again.",
        file=sys.stderr,
    )


def _strip(url: str) -> str:
    return url.rstrip("/")


def default_arkor_cloud_api_url(credentials: AnyCredentials | None = None) -> str:
    """The control plane to talk to.

    1. ``ARKOR_CLOUD_API_URL`` when set (an empty value is honoured as empty);
    2. the URL stamped into the credentials at sign-in;
    3. the local control plane started by ``arkor dev`` / ``arkor cloud serve``.
    """
    env = os.environ.get("ARKOR_CLOUD_API_URL")
    if env is not None:
        return _strip(env)
    if credentials is not None and isinstance(credentials.arkor_cloud_api_url, str):
        return _strip(credentials.arkor_cloud_api_url)
    return DEFAULT_CLOUD_API_URL


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORTS = {"http": 80, "https": 443}


class TokenOriginWarning(UserWarning):
    """Credentials are about to be sent to a control plane other than the one that issued
    them. ``warnings.simplefilter("error", TokenOriginWarning)`` turns it into a refusal."""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return scheme, "loopback" if host in LOOPBACK_HOSTS else host, port


def check_token_origin(
    credentials: AnyCredentials, base_url: str, *, stacklevel: int = 2
) -> None:
    """Warn when ``base_url`` is not the origin that issued ``credentials``.

    Origins compare scheme, host and port; ``localhost``, ``127.0.0.1`` and ``::1`` count as
    one host. Credentials without a recorded URL (older files) are not checked.
    """
    issued = credentials.arkor_cloud_api_url
    if not issued or _origin(issued) == _origin(base_url):
        return
    warnings.warn(TokenOriginWarning(
        f"These credentials were issued by {_strip(issued)}, but their token is about to be "
        f"sent to {_strip(base_url)}. If that is another server, sign in there separately "
        "(`arkor login` with its own ARKOR_HOME) or point ARKOR_CLOUD_API_URL back at "
        f"{_strip(issued)}. If it is the same server under another name, silence this with "
        'warnings.filterwarnings("ignore", category=arkor.TokenOriginWarning).'
    ), stacklevel=stacklevel + 1)
