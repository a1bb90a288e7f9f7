"""A server for a team: sign-up policy and its rate limit, users and invites through the admin
API, personal access tokens (expiry, revocation, disabled users) checked in the database on
every request, by every server process, and never written to a log."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from arkor.contract.models import (
    ROLE_MEMBER,
    ROLE_VIEWER,
    SIGNUP_ANONYMOUS,
    SIGNUP_DISABLED,
    SIGNUP_INVITE,
)
from arkor.sdk import AuthenticationError, CloudApiClient, NotFoundError, PermissionDeniedError
from arkor.server import create_app
from arkor.store import users
from arkor.store.tables import AccessToken, Membership, utcnow
from tests.servers import LiveServer, free_port

HEADERS = {"X-Arkor-Client": "arkor/0.1.0"}
ARKOR = str(Path(sys.executable).with_name("arkor"))


def call(url: str, method: str, path: str, token: str | None = None,
         **kwargs: object) -> httpx.Response:
    headers = dict(HEADERS)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(method, url + path, headers=headers, **kwargs)  # type: ignore[arg-type]


def me_status(url: str, token: str) -> int:
    return call(url, "GET", "/v1/me", token).status_code


@pytest.fixture(scope="module")
def admin_token(cloud) -> str:
    with cloud.app.state.db.session() as session:
        created = users.create_user(session, email="root@example.com", admin=True,
                                    org_slug="ops", role="owner")
        return created.token.plaintext


@pytest.fixture(scope="module")
def invite_only(cloud) -> Iterator[str]:
    """A second server on the same database, invite-only, with a small sign-up budget."""
    settings = replace(cloud.settings, signup=SIGNUP_INVITE, signup_per_hour=3)
    with LiveServer(create_app(settings)) as url:
        yield url


def test_loopback_default_allows_anonymous_and_the_config_says_so(cloud) -> None:
    assert call(cloud.url, "GET", "/v1/auth/cli/config").json()["signup"] == SIGNUP_ANONYMOUS
    assert call(cloud.url, "POST", "/v1/auth/anonymous", json={}).status_code == 200


def test_admin_creates_a_user_and_an_invite_and_the_invitee_joins_with_that_role(
        cloud, admin_token, invite_only) -> None:
    admin = CloudApiClient(base_url=cloud.url, token=admin_token)
    body = {"email": "Alice@Example.com", "name": "Alice", "orgSlug": "team", "role": "owner"}
    created = call(cloud.url, "POST", "/v1/admin/users", admin_token, json=body)
    assert created.status_code == 201, created.text
    alice = created.json()
    assert alice["user"]["email"] == "alice@example.com" and alice["org"]["slug"] == "team"
    alice_token = alice["token"]["plaintext"]
    assert alice_token.startswith("arkor_pat_")
    me = CloudApiClient(base_url=cloud.url, token=alice_token).get_me()
    assert me.user.name == "Alice" and [o.slug for o in me.orgs] == ["team"]

    again = call(cloud.url, "POST", "/v1/admin/users", admin_token, json=body)
    assert again.status_code == 409 and "already exists" in again.json()["error"]
    bad = call(cloud.url, "POST", "/v1/admin/users", admin_token,
               json={"email": "bob@example.com", "orgSlug": "Not A Slug"})
    assert bad.status_code == 400 and "org slug" in bad.json()["error"]
    with cloud.app.state.db.session() as session:  # nothing half-created by the refusals
        assert users.user_by_email(session, "bob@example.com") is None
    listed = call(cloud.url, "GET", "/v1/admin/users", admin_token).json()["users"]
    assert "alice@example.com" in [u["email"] for u in listed]

    invite = call(cloud.url, "POST", "/v1/admin/invites", admin_token,
                  json={"orgSlug": "team", "role": ROLE_VIEWER})
    assert invite.status_code == 201, invite.text
    code = invite.json()["code"]
    assert call(cloud.url, "POST", "/v1/admin/invites", admin_token,
                json={"orgSlug": "nowhere"}).status_code == 404
    assert call(cloud.url, "POST", "/v1/admin/invites", admin_token,
                json={"orgSlug": "team", "role": "king"}).status_code == 400

    joined = CloudApiClient(base_url=invite_only).accept_invite(code, email="carol@example.com")
    assert joined.org.slug == "team" and joined.role == ROLE_VIEWER
    with cloud.app.state.db.session() as session:
        role = session.get(Membership, (joined.user.id, joined.org.id))
        assert role is not None and role.role == ROLE_VIEWER
    assert me_status(cloud.url, joined.token.plaintext) == 200
    with pytest.raises(PermissionDeniedError, match="already used"):
        CloudApiClient(base_url=invite_only).accept_invite(code)
    with pytest.raises(PermissionDeniedError, match="mistyped"):
        CloudApiClient(base_url=invite_only).accept_invite(code[:-1] + "x")
    admin.close()


def test_invite_only_refuses_anonymous_sign_up_and_limits_attempts(cloud, invite_only) -> None:
    assert call(invite_only, "GET", "/v1/auth/cli/config").json()["signup"] == SIGNUP_INVITE
    refused = call(invite_only, "POST", "/v1/auth/anonymous", json={})
    assert refused.status_code == 403
    assert "arkor login --invite CODE" in refused.json()["error"]
    with cloud.app.state.db.session() as session:
        anonymous = users.count_anonymous(session)
    answers = [call(invite_only, "POST", "/v1/auth/invite", json={"code": "arkor_inv_x"})
               for _ in range(4)]
    statuses = [a.status_code for a in answers]
    assert statuses[-1] == 429 and set(statuses[:-1]) <= {403, 429}, statuses
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert "Try again in" in answers[-1].json()["error"]
    with cloud.app.state.db.session() as session:
        assert users.count_anonymous(session) == anonymous


def test_with_sign_up_disabled_both_refusals_point_at_the_operator(cloud) -> None:
    settings = replace(cloud.settings, signup=SIGNUP_DISABLED)
    with LiveServer(create_app(settings)) as url:
        for path, body in (("/v1/auth/anonymous", {}), ("/v1/auth/invite",
                                                         {"code": "arkor_inv_x"})):
            refused = call(url, "POST", path, json=body)
            assert refused.status_code == 403, refused.text
            message = refused.json()["error"]
            assert "arkor cloud users create EMAIL" in message and "--invite" not in message


def test_a_token_works_until_revoked_or_expired_and_not_one_request_after(cloud) -> None:
    anon = CloudApiClient(base_url=cloud.url).create_anonymous_session()
    owner = CloudApiClient(base_url=cloud.url, token=anon.token)
    created = owner.create_access_token(name="ci", expires_in_days=30)
    assert created.prefix and created.plaintext.startswith(created.prefix)
    assert created.expires_at is not None
    ci = CloudApiClient(base_url=cloud.url, token=created.plaintext)
    assert ci.get_me().user.id == anon.anonymous_id
    listed = {t.id: t for t in ci.list_access_tokens()}
    assert listed[created.id].current and listed[created.id].last_used_at is not None
    assert "plaintext" not in ci.list_access_tokens()[0].to_wire()
    other = CloudApiClient(base_url=cloud.url).create_anonymous_session()
    with pytest.raises(NotFoundError):  # another user's token is not there
        CloudApiClient(base_url=cloud.url, token=other.token).revoke_access_token(created.id)

    owner.revoke_access_token(created.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        ci.get_me()
    assert created.id not in [t.id for t in owner.list_access_tokens()]

    expiring = owner.create_access_token(name="short")
    assert me_status(cloud.url, expiring.plaintext) == 200
    with cloud.app.state.db.session() as session:
        session.execute(update(AccessToken).where(AccessToken.id == expiring.id)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert me_status(cloud.url, expiring.plaintext) == 401

    mangled = created.plaintext[:-1] + ("A" if created.plaintext[-1] != "A" else "B")
    assert me_status(cloud.url, mangled) == 401
    bad = call(cloud.url, "POST", "/v1/auth/tokens", anon.token, json={"name": ""})
    assert bad.status_code == 400
    too_long = call(cloud.url, "POST", "/v1/auth/tokens", anon.token,
                    json={"name": "x", "expiresInDays": 0})
    assert too_long.status_code == 400
    owner.close()
    ci.close()


def test_the_admin_api_refuses_non_admins_and_disabled_users_are_refused(
        cloud, admin_token) -> None:
    anon = CloudApiClient(base_url=cloud.url).create_anonymous_session()
    for method, path, body in [("GET", "/v1/admin/users", None),
                               ("POST", "/v1/admin/users", {"email": "x@example.com"}),
                               ("POST", "/v1/admin/users/some-id/disable", None),
                               ("POST", "/v1/admin/invites", {"orgSlug": "team"})]:
        assert call(cloud.url, method, path, json=body).status_code == 401
        refused = call(cloud.url, method, path, anon.token, json=body)
        assert refused.status_code == 403 and "admins" in refused.json()["error"]

    created = call(cloud.url, "POST", "/v1/admin/users", admin_token,
                   json={"email": "dave@example.com", "orgSlug": "team"}).json()
    assert created["user"]["admin"] is False
    dave = created["token"]["plaintext"]
    assert me_status(cloud.url, dave) == 200
    with cloud.app.state.db.session() as session:
        member = session.get(Membership, (created["user"]["id"], created["org"]["id"]))
        assert member is not None and member.role == ROLE_MEMBER
    disabled = call(cloud.url, "POST", f"/v1/admin/users/{created['user']['id']}/disable",
                    admin_token)
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert me_status(cloud.url, dave) == 401
    assert call(cloud.url, "POST", "/v1/admin/users/nobody/disable",
                admin_token).status_code == 404


def test_no_token_or_invite_code_reaches_a_log(cloud, admin_token, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    anon = CloudApiClient(base_url=cloud.url).create_anonymous_session()
    client = CloudApiClient(base_url=cloud.url, token=anon.token)
    pat = client.create_access_token(name="logged")
    code = call(cloud.url, "POST", "/v1/admin/invites", admin_token,
                json={"orgSlug": "team"}).json()["code"]
    joined = CloudApiClient(base_url=cloud.url).accept_invite(code)
    for token in (anon.token, pat.plaintext, joined.token.plaintext):
        call(cloud.url, "GET", "/v1/me", token)
    call(cloud.url, "GET", "/v1/me", pat.plaintext + "x")
    client.revoke_access_token(pat.id)
    call(cloud.url, "GET", "/v1/me", pat.plaintext)
    logged = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records)
    assert "/v1/me" in logged  # the access log was captured
    for secret in (anon.token, pat.plaintext, joined.token.plaintext, code, admin_token):
        assert secret not in logged
    assert pat.plaintext not in repr(pat) and code not in repr(joined)
    client.close()


@pytest.fixture(scope="module")
def second_process(cloud, tmp_path_factory) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``arkor cloud serve --host 0.0.0.0`` in its own process, on the same database."""
    port = free_port()
    env = {**os.environ, "ARKOR_DATA_DIR": str(tmp_path_factory.mktemp("second")),
           "ARKOR_DATABASE_URL": cloud.settings.db_url}
    env.pop("ARKOR_SIGNUP", None)
    proc = subprocess.Popen([ARKOR, "cloud", "serve", "--host", "0.0.0.0", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.communicate()[0]) from None
                time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_off_loopback_the_default_is_invite_and_revocation_reaches_another_process(
        cloud, second_process) -> None:
    url, _proc = second_process
    refused = call(url, "POST", "/v1/auth/anonymous", json={})
    assert refused.status_code == 403, refused.text
    assert "arkor login --invite CODE" in refused.json()["error"]
    assert call(url, "GET", "/v1/auth/cli/config").json()["signup"] == SIGNUP_INVITE

    anon = CloudApiClient(base_url=cloud.url).create_anonymous_session()
    owner = CloudApiClient(base_url=cloud.url, token=anon.token)
    pat = owner.create_access_token(name="elsewhere")
    assert me_status(url, pat.plaintext) == 200
    owner.revoke_access_token(pat.id)
    assert me_status(url, pat.plaintext) == 401
    short = owner.create_access_token(name="short")
    assert me_status(url, short.plaintext) == 200
    with cloud.app.state.db.session() as session:
        session.execute(update(AccessToken).where(AccessToken.id == short.id)
                        .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert me_status(url, short.plaintext) == 401
    owner.close()
