"""``.arkor/state.json`` and the project bootstrap: anonymous sessions (contract §2.5), and
tokens of real users (their first org when none is recorded; a viewer adopts or is told)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import delete

from arkor import (
    ANON_STATE_MISMATCH_MESSAGE,
    OAUTH_MISSING_STATE_MESSAGE,
    AnonymousCredentials,
    CloudApiClient,
    ConflictError,
    CredentialsError,
    OAuthCredentials,
    PermissionDeniedError,
    ProjectState,
    TokenCredentials,
    credentials_path,
    ensure_credentials,
    ensure_project_state,
    read_state,
    usable_state,
    write_state,
)
from arkor.contract.models import ROLE_OWNER, ROLE_VIEWER
from arkor.sdk._bootstrap import NO_ORG_MESSAGE
from arkor.sdk._state import project_slug_for, state_path
from arkor.store import users
from arkor.store.tables import Membership


def test_write_format_and_read(tmp_path: Path) -> None:
    state = ProjectState(org_slug="o", project_slug="p", project_id="id")
    path = write_state(state, tmp_path)
    assert path == tmp_path / ".arkor" / "state.json"
    assert path.read_text() == json.dumps(
        {"orgSlug": "o", "projectSlug": "p", "projectId": "id"}, indent=2
    ) + "\n"
    assert read_state(tmp_path) == state


@pytest.mark.parametrize(
    "content",
    ["", "nope", "[]", '{"orgSlug": "o", "projectSlug": "p"}',
     '{"orgSlug": "o", "projectSlug": "p", "projectId": 3}'],
)
def test_invalid_state_reads_as_none(tmp_path: Path, content: str) -> None:
    state_path(tmp_path).parent.mkdir()
    state_path(tmp_path).write_text(content)
    assert read_state(tmp_path) is None


@pytest.mark.parametrize(
    ("directory", "slug"),
    [("My Project", "my-project"), ("__x__", "x"), ("Ünïcode!", "n-code"), ("---", "project"),
     ("a" * 60, "a" * 40)],
)
def test_project_slug_from_directory(directory: str, slug: str) -> None:
    assert project_slug_for(Path("/work") / directory) == (directory, slug)


def test_bootstrap_creates_project_and_state_once(cloud, tmp_path: Path) -> None:
    creds = ensure_credentials(base_url=cloud.url)
    workdir = tmp_path / "Support Bot"
    workdir.mkdir()
    with CloudApiClient(base_url=cloud.url, credentials=creds) as client:
        state = ensure_project_state(client, creds, workdir)
        assert state.org_slug == creds.org_slug and state.project_slug == "support-bot"
        assert read_state(workdir) == state
        assert ensure_project_state(client, creds, workdir) == state
        projects = client.list_projects(creds.org_slug).projects
        assert [(p.slug, p.id) for p in projects] == [("support-bot", state.project_id)]


def test_bootstrap_adopts_an_existing_project_on_409(cloud, tmp_path: Path) -> None:
    creds = ensure_credentials(base_url=cloud.url)
    workdir = tmp_path / "taken"
    workdir.mkdir()
    with CloudApiClient(base_url=cloud.url, credentials=creds) as client:
        existing = client.create_project(creds.org_slug, name="taken", slug="taken")
        state = ensure_project_state(client, creds, workdir)
    assert state.project_id == existing.id


def test_foreign_state_is_ignored_on_read_and_refused_on_write(cloud, tmp_path: Path) -> None:
    creds = ensure_credentials(base_url=cloud.url)
    foreign = ProjectState(org_slug="someone-else", project_slug="p", project_id="x")
    write_state(foreign, tmp_path)
    assert usable_state(creds, tmp_path) is None
    with CloudApiClient(base_url=cloud.url, credentials=creds) as client, \
            pytest.raises(ConflictError) as err:
        ensure_project_state(client, creds, tmp_path)
    assert err.value.message == ANON_STATE_MISMATCH_MESSAGE
    assert read_state(tmp_path) == foreign  # never deleted or overwritten


def test_oauth_without_state_is_told_to_write_it(tmp_path: Path) -> None:
    oauth = OAuthCredentials(access_token="a", refresh_token="r", expires_at=0,
                             auth0_domain="d", audience="a", client_id="c")
    with CloudApiClient(base_url="http://127.0.0.1:9", credentials=oauth) as client, \
            pytest.raises(CredentialsError) as err:
        ensure_project_state(client, oauth, tmp_path)
    assert err.value.message == OAUTH_MISSING_STATE_MESSAGE
    other = ProjectState(org_slug="any", project_slug="p", project_id="x")
    write_state(other, tmp_path)
    assert usable_state(oauth, tmp_path) == other  # OAuth state is always usable


def test_anonymous_credentials_state_must_match_org(tmp_path: Path) -> None:
    creds = AnonymousCredentials(token="t", anonymous_id="a", org_slug="mine")
    write_state(ProjectState("mine", "p", "1"), tmp_path)
    assert usable_state(creds, tmp_path) is not None


def operator_user(cloud, email: str, **options) -> users.CreatedUser:
    """A user as `arkor cloud users create` makes one (the same store call)."""
    with cloud.app.state.db.session() as session:
        return users.create_user(session, email=email, **options)


def test_ensure_credentials_takes_arkor_token_and_writes_nothing(monkeypatch) -> None:
    monkeypatch.setenv("ARKOR_TOKEN", "arkor_pat_from-ci")
    found = ensure_credentials(base_url="http://127.0.0.1:9")  # nothing is called
    assert found == TokenCredentials(token="arkor_pat_from-ci")
    assert not credentials_path().exists()


def test_a_token_without_an_org_sets_up_its_project_in_its_first_org(cloud,
                                                                     tmp_path: Path) -> None:
    created = operator_user(cloud, "env-token@example.com")
    token = TokenCredentials(token=created.token.plaintext)  # as ARKOR_TOKEN reads it
    workdir = tmp_path / "support-bot"
    workdir.mkdir()
    with CloudApiClient(base_url=cloud.url, credentials=token) as client:
        state = ensure_project_state(client, token, workdir)
        assert (state.org_slug, state.project_slug) == (created.org.slug, "support-bot")
        assert [p.id for p in client.list_projects(created.org.slug).projects] == [
            state.project_id]


def test_a_viewer_adopts_the_directory_s_project_or_is_told_what_to_use(cloud,
                                                                        tmp_path: Path) -> None:
    owner = operator_user(cloud, "owner@example.com", org_slug="studio", role=ROLE_OWNER)
    viewer = operator_user(cloud, "viewer@example.com", org_slug="studio", role=ROLE_VIEWER)
    with CloudApiClient(base_url=cloud.url, token=owner.token.plaintext) as client:
        shared = client.create_project("studio", name="shared", slug="shared")
    token = TokenCredentials(token=viewer.token.plaintext, org_slug="studio")
    (tmp_path / "shared").mkdir()
    (tmp_path / "other").mkdir()
    with CloudApiClient(base_url=cloud.url, credentials=token) as client:
        state = ensure_project_state(client, token, tmp_path / "shared")
        assert state == ProjectState("studio", "shared", shared.id)
        with pytest.raises(PermissionDeniedError) as err:
            ensure_project_state(client, token, tmp_path / "other")
    assert "creating one ('other' in org 'studio') was refused" in err.value.message
    assert "needs the member role" in err.value.message and "(shared)" in err.value.message
    assert read_state(tmp_path / "other") is None


def test_a_token_in_no_org_is_told_to_ask_for_one(cloud, tmp_path: Path) -> None:
    created = operator_user(cloud, "orphan@example.com")
    with cloud.app.state.db.session() as session:
        session.execute(delete(Membership).where(Membership.user_id == created.user.id))
    token = TokenCredentials(token=created.token.plaintext)
    with CloudApiClient(base_url=cloud.url, credentials=token) as client, \
            pytest.raises(CredentialsError) as err:
        ensure_project_state(client, token, tmp_path)
    assert err.value.message == NO_ORG_MESSAGE.format(url=cloud.url)
