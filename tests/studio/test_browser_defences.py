"""Headers that keep the Studio out of frames and foreign scripts, no bearer token handed to
the page, and odd static paths answered 404 rather than 500."""

from __future__ import annotations

import re

import pytest

from arkor.studio.config import STATIC_DIR

HEADERS = {"x-frame-options": "DENY", "x-content-type-options": "nosniff",
           "referrer-policy": "no-referrer"}


def assert_defended(response) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (response.url, name)
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_every_response_carries_the_defences(studio) -> None:
    responses = [
        studio.get("/", token=None),
        studio.get("/app.js", token=None),
        studio.get("/style.css", token=None),
        studio.get("/missing.js", token=None),
        studio.get("/api/credentials"),
        studio.get("/api/jobs"),
        studio.get("/api/nothing-here"),
        studio.get("/api/credentials", token=None),
        studio.get("/api/credentials", headers={"Host": "evil.example.com"}),
        studio.get("/", headers={"Host": "evil.example.com"}, token=None),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 200, 200, 404, 403, 403,
                                                  403]
    for response in responses:
        assert_defended(response)


def test_pages_run_under_the_policy() -> None:
    """No inline script, style attribute or style element that the policy would block."""
    for path in STATIC_DIR.rglob("*"):
        if path.suffix not in (".html", ".js"):
            continue
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
        assert not re.search(r"<style\b|\sstyle=|[\s\"']on[a-z]+=", text), path
        assert "eval(" not in text and "new Function" not in text, path
    assert '<script src="theme.js"></script>' in (STATIC_DIR / "index.html").read_text()


def test_credentials_never_reach_the_page(studio) -> None:
    from arkor.sdk import read_credentials

    response = studio.get("/api/credentials")
    assert response.status_code == 200
    assert set(response.json()) == {"mode", "baseUrl", "orgSlug", "projectSlug"}
    assert read_credentials().bearer not in response.text


@pytest.mark.parametrize("path", ["/%00", "/app.js%00", "/%00.js", "/pages%00/x",
                                  "/index.html%00.png"])
def test_nul_in_a_static_path_is_404(studio, path: str) -> None:
    response = studio.get(path, token=None)
    assert (response.status_code, response.text) == (404, "Not found")
    assert_defended(response)
