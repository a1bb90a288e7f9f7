"""Loopback Host guard, the per-launch token, and the static UI with its meta tag."""

from __future__ import annotations

import os
import re

import pytest

from arkor.studio import StudioConfig
from arkor.studio.guards import token_matches

TOKEN_ERROR = {"error": "Missing or invalid studio token"}


def test_api_without_token_is_refused(studio) -> None:
    response = studio.get("/api/credentials", token=None)
    assert response.status_code == 403
    assert response.json() == TOKEN_ERROR
    assert re.search(r"studio token", response.json()["error"], re.I)


def test_wrong_token_of_the_same_length_is_refused(studio) -> None:
    wrong = ("A" if studio.token[0] != "A" else "B") + studio.token[1:]
    response = studio.get("/api/credentials", token=wrong)
    assert (response.status_code, response.json()) == (403, TOKEN_ERROR)


@pytest.mark.parametrize("given", ["short", "x" * 200])
def test_token_of_another_length_is_refused(studio, given: str) -> None:
    response = studio.get("/api/jobs", token=given)
    assert (response.status_code, response.json()) == (403, TOKEN_ERROR)


def test_every_api_route_needs_the_token(studio) -> None:
    for method, path in [("GET", "/api/me"), ("GET", "/api/jobs"),
                         ("GET", "/api/deployments"), ("POST", "/api/deployments"),
                         ("PATCH", "/api/deployments/x"), ("DELETE", "/api/deployments/x"),
                         ("POST", "/api/deployments/x/keys"), ("POST", "/api/train"),
                         ("POST", "/api/datasets"), ("POST", "/api/inference/chat"),
                         ("GET", "/api/base-models"), ("POST", "/api/jobs/x/cancel"),
                         ("GET", "/api/nothing-here"), ("POST", "/api/status"),
                         ("GET", "/api/status/"), ("GET", "/api/status/x")]:
        response = studio.request(method, path, token=None)
        assert (response.status_code, response.json()) == (403, TOKEN_ERROR), (method, path)


def test_status_is_the_one_api_route_open_without_a_token(studio, cloud) -> None:
    response = studio.get("/api/status", token=None)
    assert response.status_code == 200
    body = response.json()
    assert body == {"status": "ok", "version": body["version"], "mode": "interactive",
                    "url": studio.url, "pid": os.getpid(), "cwd": str(studio.cwd),
                    "endpoints": {"studio": studio.url, "cloud": cloud.url}}
    assert studio.token not in response.text
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("host", ["evil.example.com", "127.0.0.1.evil.com", "[::1]:4000"])
def test_status_still_needs_a_loopback_host(studio, host: str) -> None:
    response = studio.get("/api/status", token=None, headers={"Host": host})
    assert (response.status_code, response.json()) == (403,
                                                       {"error": "Studio API is loopback-only"})


def test_query_token_only_opens_the_event_stream(studio) -> None:
    query = {"studioToken": studio.token}
    refused = studio.get("/api/jobs", token=None, params=query)
    assert refused.status_code == 403
    refused = studio.post("/api/jobs/abc/cancel", token=None, params=query)
    assert refused.status_code == 403
    events = studio.get("/api/jobs/abc/events", token=None, params=query)
    assert events.status_code != 403  # 400: this workspace has no project yet
    assert events.json() == {"error": "No project state"}


@pytest.mark.parametrize("host", ["evil.example.com", "127.0.0.1.evil.com", "localhost.evil",
                                  "[::1]:4000", "10.0.0.1:4000"])
def test_foreign_host_is_refused(studio, host: str) -> None:
    api = studio.get("/api/credentials", headers={"Host": host})
    assert (api.status_code, api.json()) == (403, {"error": "Studio API is loopback-only"})
    page = studio.get("/", headers={"Host": host}, token=None)
    assert (page.status_code, page.text) == (403, "Studio is loopback-only")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "localhost:4000", "127.0.0.1:1"])
def test_loopback_hosts_are_served(studio, host: str) -> None:
    assert studio.get("/", headers={"Host": host}, token=None).status_code == 200


def test_no_cors_headers(studio) -> None:
    response = studio.get("/api/jobs", headers={"Origin": "http://evil.example.com"})
    assert response.status_code == 200
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    preflight = studio.request("OPTIONS", "/api/jobs", token=None,
                               headers={"Origin": "http://evil.example.com",
                                        "Access-Control-Request-Method": "POST"})
    assert not [h for h in preflight.headers if h.lower().startswith("access-control-")]


def test_index_carries_the_token_once(studio) -> None:
    page = studio.get("/", token=None)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>Arkor Studio</title>" in page.text
    metas = re.findall(r'<meta name="arkor-studio-token" content="([^"]*)">', page.text)
    assert metas == [studio.token]
    assert page.text.index("arkor-studio-token") < page.text.index("</head>")


def test_static_assets_and_fallbacks(studio) -> None:
    script = studio.get("/app.js", token=None)
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    style = studio.get("/style.css", token=None)
    assert style.headers["content-type"].startswith("text/css")
    assert "arkor-studio-token" in studio.get("/jobs/some-id", token=None).text
    missing = studio.get("/missing.js", token=None)
    assert (missing.status_code, missing.text) == (404, "Not found")
    escaped = studio.get("/..%2F..%2Fpyproject.toml", token=None)
    assert escaped.status_code == 404


def test_unknown_api_route_is_json_404(studio) -> None:
    response = studio.get("/api/nothing-here")
    assert response.status_code == 404
    assert "error" in response.json()


def test_token_compare_and_length() -> None:
    assert token_matches("a" * 43, "a" * 43)
    assert not token_matches(None, "a" * 43)
    assert not token_matches("a" * 42, "a" * 43)
    with pytest.raises(ValueError):
        StudioConfig(cwd=".", token="too-short")  # type: ignore[arg-type]
    assert len(StudioConfig(cwd=".").token) == 43  # type: ignore[arg-type]
