"""Error mapping: every status to its class, transport failures to ours, 426 to an upgrade hint."""

from __future__ import annotations

import httpx
import pytest

from arkor import (
    ApiConnectionError,
    ApiTimeoutError,
    AuthenticationError,
    BadRequestError,
    CloudApiClient,
    CloudApiError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    UnsupportedClientError,
)


def client_answering(status: int, body: bytes, content_type: str = "application/json"):
    # MockTransport stands in for a server that answers with this exact status and body.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": content_type})

    return CloudApiClient(base_url="http://cloud.test", token="t",
                          transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError),
     (404, NotFoundError), (409, ConflictError), (426, UnsupportedClientError),
     (500, ServerError), (503, ServerError), (418, CloudApiError)],
)
def test_status_to_class(status: int, cls: type) -> None:
    with pytest.raises(cls) as err:
        client_answering(status, b'{"error": "nope"}').get_me()
    assert err.value.status == status
    assert isinstance(err.value, CloudApiError)


@pytest.mark.parametrize(
    ("body", "message"),
    [(b'{"error": "Deployment slug is already taken"}', "Deployment slug is already taken"),
     (b"plain text failure", "plain text failure"), (b"", "cloud-api 409")],
)
def test_message_fallbacks(body: bytes, message: str) -> None:
    with pytest.raises(ConflictError) as err:
        client_answering(409, body, "text/plain").get_me()
    assert err.value.message == message


def test_426_becomes_an_upgrade_instruction() -> None:
    body = (b'{"error": "sdk_version_unsupported", "currentVersion": "0.0.9", '
            b'"supportedRange": ">=0.1.0", "upgrade": "x", "reason": "malformed"}')
    with pytest.raises(UnsupportedClientError) as err:
        client_answering(426, body).get_me()
    assert "Arkor SDK 0.0.9 is no longer supported" in err.value.message
    assert ">=0.1.0" in err.value.message and "pip install -U arkor" in err.value.message
    assert "header was malformed" in err.value.message
    with pytest.raises(UnsupportedClientError) as err:
        client_answering(426, b"<html>old</html>", "text/html").get_me()
    assert err.value.message == (
        "Arkor SDK is no longer supported by the cloud API. Run `pip install -U arkor`."
    )


def test_connection_refused_is_mapped() -> None:
    client = CloudApiClient(base_url="http://127.0.0.1:9", token="t")
    with pytest.raises(ApiConnectionError) as err:
        client.get_me()
    assert err.value.status is None
    assert "arkor dev" in err.value.message and "ARKOR_CLOUD_API_URL" in err.value.message


def test_timeout_is_mapped() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    client = CloudApiClient(base_url="http://cloud.test", transport=httpx.MockTransport(slow))
    with pytest.raises(ApiTimeoutError):
        client.get_me()


def test_every_request_carries_the_client_header() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"user": {"id": "u"}, "orgs": []})

    CloudApiClient(base_url="http://cloud.test", token="tok",
                   transport=httpx.MockTransport(record)).get_me()
    assert seen[0].headers["X-Arkor-Client"].startswith("arkor/")
    assert seen[0].headers["Authorization"] == "Bearer tok"
