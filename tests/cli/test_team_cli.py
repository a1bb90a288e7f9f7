"""The operator's commands on the server's database, and a team member's CLI: sign in with a
token or an invite, manage tokens, log out (revoking the token on the server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from typer.testing import CliRunner

from arkor.cli.main import app
from arkor.contract.models import SIGNUP_INVITE
from arkor.sdk import TokenCredentials, credentials_path, read_credentials
from arkor.server import create_app
from tests.servers import LiveServer


@pytest.fixture
def arkor(arkor, cloud, monkeypatch):
    """The CLI, also as the operator on the server's database (``arkor cloud users``)."""
    monkeypatch.setenv("ARKOR_DATABASE_URL", cloud.settings.db_url)
    monkeypatch.setenv("ARKOR_DATA_DIR", str(cloud.settings.data_dir))
    return arkor


def works(cloud, token: str) -> bool:
    response = httpx.get(cloud.url + "/v1/me", headers={
        "X-Arkor-Client": "arkor/0.1.0", "Authorization": f"Bearer {token}"})
    return response.status_code == 200


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1].strip()


def test_operator_creates_users_and_invites_and_members_sign_in(arkor, cloud) -> None:
    out = arkor("cloud", "users", "create", "Ann@example.com", "--name", "Ann", "--admin",
                "--org", "crew", "--role", "owner").stdout
    assert "Created user ann@example.com in org crew as owner (admin)" in out
    ann = last_line(out)
    assert ann.startswith("arkor_pat_") and works(cloud, ann)
    assert "already exists" in arkor("cloud", "users", "create", "ann@example.com",
                                     code=1).stderr
    assert "role must be one of" in arkor("cloud", "users", "create", "x@example.com",
                                          "--org", "crew", "--role", "boss", code=1).stderr
    assert "not an email address" in arkor("cloud", "users", "create", "x@", code=1).stderr
    listed = json.loads(arkor("cloud", "users", "list", "--json").stdout)
    assert [u["email"] for u in listed["users"]].count("ann@example.com") == 1
    assert "x@example.com" not in [u["email"] for u in listed["users"]]

    signed_in = arkor("login", "--token", ann).stdout
    assert "as ann@example.com with a token (org crew)" in signed_in
    assert isinstance(read_credentials(), TokenCredentials)
    assert ann not in signed_in + arkor("whoami").stdout
    created = arkor("tokens", "create", "ci", "--expires-in-days", "5", "--json").stdout
    ci = json.loads(created)
    assert works(cloud, ci["plaintext"])
    table = arkor("tokens", "list").stdout
    assert "ci" in table and ci["plaintext"] not in table and "*" in table
    arkor("tokens", "revoke", ci["id"])
    assert not works(cloud, ci["plaintext"])
    assert "not found" in arkor("tokens", "revoke", ci["id"], code=1).stderr

    out = arkor("cloud", "invites", "create", "--org", "crew", "--role", "viewer").stdout
    code = last_line(out)
    assert "as viewer" in out and code.startswith("arkor_inv_")
    assert "does not exist" in arkor("cloud", "invites", "create", "--org", "ghost",
                                     code=1).stderr
    arkor("logout", "--force")
    assert not works(cloud, ann)  # logout revoked it on the server
    joined = arkor("login", "--invite", code, "--email", "ben@example.com").stdout
    assert "as ben@example.com with a token (org crew)" in joined
    ben = read_credentials()
    assert isinstance(ben, TokenCredentials) and works(cloud, ben.token)
    assert "already used" in arkor("login", "--invite", code, "--force", code=1).stderr

    arkor("cloud", "users", "disable", "ben@example.com")
    assert not works(cloud, ben.token)
    assert "No user" in arkor("cloud", "users", "disable", "nobody@example.com", code=1).stderr
    arkor("logout", "--force")  # its token is already refused: still logs out, quietly
    assert not credentials_path().exists()


def test_arkor_token_env_signs_in_ci_without_a_file(arkor, cloud, monkeypatch) -> None:
    token = last_line(arkor("cloud", "users", "create", "ci-bot@example.com").stdout)
    monkeypatch.setenv("ARKOR_TOKEN", token)
    who = arkor("whoami").stdout
    assert "ci-bot@example.com" in who and "ci-bot" in who.split("Orgs:")[1]  # a personal org
    assert not credentials_path().exists()
    assert "ARKOR_TOKEN is set" in arkor("login", "--anonymous", code=1).stderr


@pytest.fixture
def invite_server(cloud) -> Iterator[str]:
    with LiveServer(create_app(replace(cloud.settings, signup=SIGNUP_INVITE))) as url:
        yield url


def test_login_offers_what_the_server_allows(arkor, invite_server, monkeypatch) -> None:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", invite_server)
    err = arkor("login", code=1).stderr
    assert "invite only" in err and "arkor login --invite CODE" in err
    assert "arkor login --invite CODE" in arkor("login", "--anonymous", code=1).stderr


def test_forcing_anonymous_sign_up_off_loopback_warns(tmp_path) -> None:
    result = CliRunner().invoke(app, [
        "cloud", "serve", "--host", "0.0.0.0", "--signup", "anonymous", "--data-dir",
        str(tmp_path), "--database-url", "postgresql://nobody@127.0.0.1:9/x"])
    assert "ARKOR_SIGNUP=anonymous on 0.0.0.0: anyone who reaches this server" in result.stderr
    bad = CliRunner().invoke(app, ["cloud", "serve", "--signup", "open"])
    assert bad.exit_code == 1 and "signup must be one of" in bad.stderr
