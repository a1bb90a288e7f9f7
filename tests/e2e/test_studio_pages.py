"""The shell and every page in a real browser: title, token, theme, no console errors."""

from __future__ import annotations

import re

import httpx

from tests.e2e.conftest import SCREENSHOTS

PAGES = ["#/", "#/jobs", "#/playground", "#/endpoints", "#/patterns", "#/jobs/unknown-job"]


def test_shell_token_identity_and_theme(page, dev_server) -> None:
    page.goto("/")
    assert page.title() == "Arkor Studio"
    metas = page.locator('meta[name="arkor-studio-token"]')
    assert metas.count() == 1
    token = metas.get_attribute("content")
    assert token and len(token) == 43
    token_file = dev_server.home / ".arkor" / "studio-token"
    assert token_file.read_text() == token
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert page.get_by_role("heading", name="Overview").is_visible()
    page.locator("identity-chip").filter(
        has_text=re.compile(r"anonymous · 127\.0\.0\.1:\d+ · owner")).wait_for()

    creds = httpx.get(dev_server.url + "/api/credentials",
                      headers={"X-Arkor-Studio-Token": token}).json()
    assert creds["mode"] == "anon" and creds["baseUrl"] == dev_server.cloud_url
    assert httpx.get(dev_server.url + "/api/credentials").status_code == 403

    toggle = page.get_by_role("button", name="Switch to dark theme")
    toggle.click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert page.evaluate("localStorage.getItem('arkor-studio-theme')") == "dark"
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "overview-dark.png"), full_page=True)
    page.get_by_role("button", name="Switch to light theme").click()
    assert page.evaluate("localStorage.getItem('arkor-studio-theme')") == "light"


def test_every_page_renders_in_both_themes(page) -> None:
    for theme in ("light", "dark"):
        page.goto("/")
        page.evaluate(f"localStorage.setItem('arkor-studio-theme', '{theme}')")
        page.reload()
        for route in PAGES:
            page.goto("/" + route)
            page.locator("main h1").first.wait_for()
            page.wait_for_load_state("networkidle")
            name = route.strip("#/").replace("/", "-") or "overview"
            page.screenshot(path=str(SCREENSHOTS / f"page-{name}-{theme}.png"), full_page=True)
    page.goto("/#/jobs/unknown-job")
    page.get_by_text("This job is not in the current project").wait_for()


def test_a_refreshed_region_keeps_its_nodes_while_its_markup_is_the_same(page) -> None:
    """``refresh`` (polled regions): a link is not swapped under the pointer by a redraw that
    changes nothing, so a click landing during it still follows the link."""
    page.goto("/")
    kept, changed, after_replace = page.evaluate("""async () => {
        const { h, refresh, replace } = await import('/dom.js');
        const box = document.createElement('div');
        const draw = (label) => refresh(box, h('a', { href: '#/jobs' }, label), 'tail');
        draw('Jobs'); const first = box.firstChild;
        draw('Jobs'); const kept = box.firstChild === first;
        draw('All jobs'); const changed = box.firstChild !== first
            && box.firstChild.textContent === 'All jobs';
        const second = box.firstChild;
        replace(box, 'loading'); draw('All jobs');
        return [kept, changed, box.firstChild !== second && box.textContent === 'All jobstail'];
    }""")
    assert (kept, changed, after_replace) == (True, True, True)


def test_keyboard_reaches_the_navigation(page) -> None:
    page.goto("/")
    for _ in range(6):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Jobs":
            break
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Jobs").wait_for()
    assert page.url.endswith("#/jobs")
