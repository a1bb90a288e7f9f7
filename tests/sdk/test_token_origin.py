"""A token goes only to the control plane that issued it unless the caller is told: clients
built for another origin warn with TokenOriginWarning (an error under
``simplefilter("error")``, so nothing is sent)."""

from __future__ import annotations

import asyncio
import warnings

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from arkor import (
    AnonymousCredentials,
    AsyncCloudApiClient,
    CloudApiClient,
    OAuthCredentials,
    TokenOriginWarning,
    ensure_credentials,
)
from tests.servers import LiveServer


def issued_by(url: str | None) -> AnonymousCredentials:
    return AnonymousCredentials(token="arkor_at_secret", anonymous_id="a", org_slug="o",
                                arkor_cloud_api_url=url)


def recorder() -> tuple[Starlette, list[str | None]]:
    """A stranger's server that writes down every Authorization header it receives."""
    seen: list[str | None] = []

    async def me(request: Request) -> JSONResponse:
        seen.append(request.headers.get("authorization"))
        return JSONResponse({"user": {"id": "u"}, "orgs": []})

    return Starlette(routes=[Route("/v1/me", me)]), seen


def test_a_client_for_another_server_warns_and_as_an_error_sends_nothing(cloud) -> None:
    credentials = ensure_credentials(base_url=cloud.url)
    app, seen = recorder()
    with LiveServer(app) as stranger:
        with pytest.raises(TokenOriginWarning) as err:
            CloudApiClient(base_url=stranger, credentials=credentials)
        assert cloud.url in str(err.value) and stranger in str(err.value)
        assert "ARKOR_CLOUD_API_URL" in str(err.value)
        assert seen == []
        with pytest.warns(TokenOriginWarning, match="about to be sent to"):
            client = CloudApiClient(base_url=stranger, credentials=credentials)
        with client:
            client.get_me()
        assert seen == [f"Bearer {credentials.token}"]  # warned, then sent as asked
    with CloudApiClient(base_url=cloud.url, credentials=credentials) as own:
        assert own.get_me().orgs[0].slug == credentials.org_slug


def test_the_async_client_warns_too() -> None:
    async def build() -> None:
        AsyncCloudApiClient(base_url="https://elsewhere.example",
                            credentials=issued_by("https://arkor.example"))

    with pytest.warns(TokenOriginWarning):
        asyncio.run(build())


@pytest.mark.parametrize("issued, used", [
    ("https://arkor.example", "https://arkor.example/"),
    ("https://arkor.example", "https://ARKOR.example:443/api"),
    ("http://localhost:8787", "http://127.0.0.1:8787"),
    ("http://127.0.0.1:8787/", "http://[::1]:8787"),
])
def test_the_same_origin_does_not_warn(issued: str, used: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CloudApiClient(base_url=used, credentials=issued_by(issued)).close()


@pytest.mark.parametrize("issued, used", [
    ("https://arkor.example", "http://arkor.example"),
    ("https://arkor.example", "https://arkor.example:8443"),
    ("https://arkor.example", "https://arkor.example.evil.com"),
    ("http://127.0.0.1:8787", "http://127.0.0.1:9000"),
])
def test_another_scheme_host_or_port_warns(issued: str, used: str) -> None:
    with pytest.warns(TokenOriginWarning):
        CloudApiClient(base_url=used, credentials=issued_by(issued)).close()


def test_files_without_a_recorded_url_and_explicit_tokens_are_not_checked() -> None:
    oauth = OAuthCredentials(access_token="a", refresh_token="r", expires_at=0,
                             auth0_domain="d", audience="a", client_id="c")
    for credentials in (issued_by(None), oauth):
        CloudApiClient(base_url="https://anywhere.example", credentials=credentials).close()
    CloudApiClient(base_url="https://anywhere.example", credentials=issued_by("https://a.example"),
                   token="given-on-purpose").close()
