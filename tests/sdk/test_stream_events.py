"""``stream_events`` drivers, sync and async, on the failures a real server does not produce on
demand: a stream cut before ``end``, 503 and 429 on open, refused connections, garbage.

These use ``httpx.MockTransport`` on purpose (the happy path and resume run against the real
server in test_jobs.py); the policy's delays are made tiny so nothing waits for real.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from arkor import (
    ApiConnectionError,
    AsyncCloudApiClient,
    AuthenticationError,
    CloudApiClient,
    JobEvent,
    NotFoundError,
    ReconnectPolicy,
    ServerError,
    UnsupportedClientError,
)

SCOPE = {"orgSlug": "o", "projectSlug": "p"}
FAST = ReconnectPolicy(initial_delay=0.001, max_delay=0.01, random=lambda: 0.5)


def frame(event_id: int, kind: str) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps({'type': kind})}\n\n"


Handler = Callable[[httpx.Request], httpx.Response]


def collect(handler: Handler, *, client_kind: str, policy: ReconnectPolicy = FAST,
            **kwargs: Any) -> list[JobEvent]:
    if client_kind == "sync":
        with CloudApiClient(base_url="http://cloud", token="t",
                            transport=httpx.MockTransport(handler)) as client:
            return list(client.stream_events("job", SCOPE, policy=policy, **kwargs))

    async def run() -> list[JobEvent]:
        async with AsyncCloudApiClient(base_url="http://cloud", token="t",
                                       transport=httpx.MockTransport(handler)) as client:
            return [e async for e in client.stream_events("job", SCOPE, policy=policy,
                                                          **kwargs)]

    return asyncio.run(run())


@pytest.fixture(params=["sync", "async"])
def client_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_cut_streams_and_errors_resume_from_the_last_id(client_kind: str) -> None:
    seen: list[str | None] = []
    answers = [
        lambda: httpx.Response(503, json={"error": "busy"}),
        lambda: httpx.Response(200, text=frame(1, "training.started") + frame(2, "training.log")
                               + "id: 3\nevent: training.log\ndata: {\"half"),
        lambda: httpx.Response(429, json={"error": "slow down"}),
        lambda: httpx.Response(200, text=": nothing yet\n\n"),
        lambda: httpx.Response(200, text=frame(3, "ping") + "data: oops\n\n"
                               + frame(4, "training.completed") + frame(4, "end")
                               + frame(5, "never")),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Last-Event-ID"))
        assert request.headers["Accept"] == "text/event-stream"
        assert request.url.params["orgSlug"] == "o"
        return answers[len(seen) - 1]()

    events = collect(handler, client_kind=client_kind)
    assert [(e.id, e.type) for e in events] == [
        ("1", "training.started"), ("2", "training.log"), ("4", "training.completed"),
        ("4", "end")]
    assert seen == [None, None, "2", "2", "2"]


def test_connection_errors_back_off_then_succeed(client_kind: str) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, text=frame(9, "end"))

    assert [e.type for e in collect(handler, client_kind=client_kind)] == ["end"]
    assert calls == 3


@pytest.mark.parametrize(("status", "error"), [
    (401, AuthenticationError), (404, NotFoundError), (426, UnsupportedClientError),
])
def test_fatal_statuses_raise_at_once(client_kind: str, status: int, error: type) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status, json={"error": f"no ({status})"})

    with pytest.raises(error):
        collect(handler, client_kind=client_kind)
    assert calls == 1


def test_without_reconnect_a_cut_stream_just_ends(client_kind: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Last-Event-ID"] == "7"
        return httpx.Response(200, text=frame(8, "training.log"))

    events = collect(handler, client_kind=client_kind, reconnect=False, last_event_id=7)
    assert [e.id for e in events] == ["8"]


def test_without_reconnect_a_refused_connection_raises(client_kind: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ApiConnectionError):
        collect(handler, client_kind=client_kind, reconnect=False)


def test_giving_up_after_max_attempts_raises_the_last_error(client_kind: str) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(502, text="bad gateway")

    policy = ReconnectPolicy(initial_delay=0.001, max_attempts=2, random=lambda: 0.5)
    with pytest.raises(ServerError) as caught:
        collect(handler, client_kind=client_kind, policy=policy)
    assert caught.value.status == 502
    assert calls == 3
