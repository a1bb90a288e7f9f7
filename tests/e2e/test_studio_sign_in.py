"""The Studio in a real browser, signed in with tokens of real users: before anyone signs in
on an invite-only control plane, a member after `arkor login --token`, a viewer refused a
write, and a revoked token.

The control plane and the Studio run in this process (real HTTP on free ports), so the
test can sign in and revoke between page loads; SQLite only (nothing here depends on the
database, and tests/studio/test_sign_in.py runs the same routes on both).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from arkor.contract.models import ROLE_MEMBER, ROLE_VIEWER, SIGNUP_INVITE
from arkor.sdk import CloudApiClient, read_credentials
from arkor.server import create_app
from arkor.store import users
from arkor.studio import StudioConfig, create_studio_app
from tests.cli.conftest import cli_runner
from tests.e2e.conftest import SCREENSHOTS, ConsoleErrors
from tests.servers import LiveServer

# Chromium logs every 4xx fetch as a console error; those are the answers under test here.
EXPECTED_FETCH_ERROR = re.compile(r"Failed to load resource: .* status of 40[13]")


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="module")
def invite_only(cloud: Any) -> Iterator[str]:
    """A control plane on the cloud's database that signs people up by invite only."""
    with LiveServer(create_app(replace(cloud.settings, signup=SIGNUP_INVITE))) as url:
        yield url


@pytest.fixture
def page(invite_only: str, chromium: Any) -> Iterator[Any]:
    """The package's Chromium on a Studio before the invite-only control plane; at the end,
    no console errors but the expected 401/403 fetches."""
    config = StudioConfig(cwd=Path.cwd(), cloud_url=invite_only)
    with LiveServer(create_studio_app(config)) as url:
        context = chromium.new_context(viewport={"width": 1280, "height": 900}, base_url=url)
        context.set_default_timeout(30_000)
        page = context.new_page()
        errors = ConsoleErrors()
        errors.watch(page)
        yield page
        context.close()
    unexpected = [e for e in errors if not EXPECTED_FETCH_ERROR.search(e)]
    assert unexpected == [], f"console errors: {unexpected}"


def operator_user(cloud: Any, email: str, role: str) -> str:
    """A user of org ``team`` as `arkor cloud users create EMAIL --org team --role ROLE`
    makes one (the same store call); their first token."""
    with cloud.app.state.db.session() as session:
        created = users.create_user(session, email=email, org_slug="team", role=role)
        return created.token.plaintext


def chip(page: Any, pattern: str) -> None:
    page.locator("identity-chip").filter(has_text=re.compile(pattern)).wait_for()


def test_sign_in_member_viewer_and_revoked_token(page: Any, cloud: Any, invite_only: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    host = re.escape(invite_only.removeprefix("http://"))
    notice = page.locator("#sign-in-notice")
    SCREENSHOTS.mkdir(exist_ok=True)

    page.goto("/")
    chip(page, "not signed in")
    notice.wait_for()
    text = notice.inner_text()
    assert "arkor login --invite CODE" in text and "arkor login --token TOKEN" in text
    assert notice.locator("code").filter(has_text="arkor login --token TOKEN").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "sign-in-invite-only.png"), full_page=True)

    monkeypatch.setenv("ARKOR_CLOUD_API_URL", invite_only)
    login = cli_runner()
    login("login", "--token", operator_user(cloud, "ann@example.com", ROLE_MEMBER))
    chip(page, rf"ann@example\.com · {host} · member")  # the chip retries by itself
    notice.wait_for(state="hidden")

    page.goto("/#/endpoints")
    page.get_by_text("Workspace not scoped to a project yet").wait_for()
    page.get_by_role("button", name="New endpoint").click()
    page.get_by_label("Slug").fill("ann-bot")
    page.get_by_label("Base model only (no LoRA)").check()
    page.get_by_role("button", name="Create endpoint").click()
    page.locator("a.list-row").filter(has_text="ann-bot").wait_for()
    page.goto("/#/jobs")
    page.get_by_text("No jobs yet").wait_for()

    viewer = operator_user(cloud, "vic@example.com", ROLE_VIEWER)
    login("login", "--force", "--token", viewer)
    page.goto("/#/endpoints")
    page.reload()
    chip(page, rf"vic@example\.com · {host} · viewer")
    page.locator("a.list-row").filter(has_text="ann-bot").wait_for()  # reading works
    page.get_by_role("button", name="New endpoint").click()
    page.get_by_label("Slug").fill("vic-bot")
    page.get_by_label("Base model only (no LoRA)").check()
    page.get_by_role("button", name="Create endpoint").click()
    refused = page.locator("form .error-box")
    refused.filter(has_text="This needs the member role in org 'team'; you are a viewer").wait_for()
    page.screenshot(path=str(SCREENSHOTS / "sign-in-viewer-refused.png"), full_page=True)

    client = CloudApiClient(base_url=invite_only, token=viewer)
    client.revoke_access_token(next(t.id for t in client.list_access_tokens() if t.current))
    page.reload()
    chip(page, "not signed in")
    notice.filter(has_text="refused the token").wait_for()
    assert "arkor login --force --token TOKEN" in notice.inner_text()
    page.get_by_text(re.compile("Failed to load endpoints: .*refused the token")).wait_for()
    page.screenshot(path=str(SCREENSHOTS / "sign-in-token-refused.png"), full_page=True)
    saved = read_credentials()
    assert saved is not None and saved.mode == "token" and saved.bearer == viewer
