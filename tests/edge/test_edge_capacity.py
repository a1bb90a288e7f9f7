"""Capacity at the edge: a client that goes away frees its slot at once, a full queue answers
429 with Retry-After, and an engine that cannot load answers 503 instead of hanging."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from arkor.cloud.settings import Settings
from arkor.engine.registry import parse_base_model_option
from arkor.server import create_app
from tests.conftest import link_cached_models
from tests.edge.conftest import EMBEDDED
from tests.servers import LiveServer
from tests.workspace import new_workspace

# Hundreds of tokens: far longer than a 3-token answer, unless abandoning it frees the slot.
LONG = {"messages": [{"role": "user", "content": "Write a long story about a dragon who "
                                                  "learns to bake bread."}],
        "max_tokens": 2000, "temperature": 0, "stream": True}
FREED_WITHIN = 60.0
DEFAULT_MAX_TOKENS, MAX_TOKENS_CAP = 7, 2500
SHORT = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 3,
         "temperature": 0}


@pytest.fixture(scope="module")
def tiny_capacity(tmp_path_factory, request, embedded_model_dir):
    """One batch slot and no waiting room, plus a base model whose weights are broken."""
    data_dir = tmp_path_factory.mktemp("capacity")
    link_cached_models(data_dir, request.config)
    broken = data_dir / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "llama"}))
    settings = Settings(data_dir=data_dir, engine_max_batch=1, engine_max_queue=0,
                        default_max_tokens=DEFAULT_MAX_TOKENS, max_tokens_cap=MAX_TOKENS_CAP,
                        base_models=(parse_base_model_option(f"acme/broken={broken}"),))
    with LiveServer(create_app(settings)) as url:
        ws = new_workspace(url)
        base = ws.client.create_deployment(ws.scope, slug="cap-base", auth_mode="none",
                                           target={"kind": "base_model", "baseModel": EMBEDDED})
        broken_dep = ws.client.create_deployment(
            ws.scope, slug="cap-broken", auth_mode="none",
            target={"kind": "base_model", "baseModel": "acme/broken"})
        httpx.post(base.url, json=SHORT, timeout=120).raise_for_status()  # load the model
        yield base, broken_dep


def test_full_queue_is_429_with_retry_after_then_recovers(tiny_capacity) -> None:
    base, _ = tiny_capacity

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=120) as client:
            async with client.stream("POST", base.url, json=LONG) as streaming:
                assert streaming.status_code == 200
                lines = streaming.aiter_lines()
                await anext(lines)  # the long request holds the only slot
                busy = await client.post(base.url, json=SHORT)
                assert busy.status_code == 429
                assert int(busy.headers["Retry-After"]) >= 1
                assert busy.json()["error"]["type"] == "rate_limit_error"
            # Leaving the stream frees the slot: the next request is served promptly.
            started = time.monotonic()
            while time.monotonic() - started < FREED_WITHIN:
                done = await client.post(base.url, json=SHORT)
                if done.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert done.status_code == 200, done.text
            assert time.monotonic() - started < FREED_WITHIN

    asyncio.run(scenario())


def test_disconnect_mid_stream_frees_the_slot(tiny_capacity) -> None:
    base, _ = tiny_capacity
    short_answer = time_a_short_answer(base.url)
    with httpx.stream("POST", base.url, json=LONG, timeout=120) as streaming:
        for index, _line in enumerate(streaming.iter_lines()):
            if index >= 3:
                break  # the client hangs up a few tokens into a long answer
    assert_slot_frees(base.url, short_answer, "the abandoned stream still holds the only slot")


def time_a_short_answer(url: str) -> float:
    """Seconds one short request takes under the current load."""
    began = time.monotonic()
    assert httpx.post(url, json=SHORT, timeout=60).status_code == 200
    return time.monotonic() - began


def assert_slot_frees(url: str, short_answer: float, message: str) -> None:
    """The only slot comes back within a few short answers' time, not a long answer's."""
    deadline = time.monotonic() + 5 * short_answer + 1.0
    while time.monotonic() < deadline:
        response = httpx.post(url, json=SHORT, timeout=60)
        if response.status_code == 200:
            break
        assert response.status_code == 429
        time.sleep(0.1)
    assert response.status_code == 200, message


def test_a_non_streaming_client_that_leaves_frees_the_slot(tiny_capacity) -> None:
    """Generation stops the moment a waiting (non-streaming) client goes away."""
    base, _ = tiny_capacity
    short_answer = time_a_short_answer(base.url)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(base.url, json={**LONG, "stream": False}, timeout=1.0)
    assert_slot_frees(base.url, short_answer, "the abandoned request still holds the only slot")


def test_output_tokens_have_an_operator_default_and_cap(tiny_capacity) -> None:
    base, _ = tiny_capacity
    unbounded = {"messages": LONG["messages"], "temperature": 0}
    answer = httpx.post(base.url, json=unbounded, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] == DEFAULT_MAX_TOKENS
    assert answer.json()["choices"][0]["finish_reason"] == "length"
    too_many = httpx.post(base.url, json={**unbounded, "max_tokens": MAX_TOKENS_CAP + 1},
                          timeout=60)
    assert too_many.status_code == 400
    assert too_many.json()["error"]["param"] == "max_tokens"
    assert str(MAX_TOKENS_CAP) in too_many.json()["error"]["message"]


def test_engine_that_cannot_load_answers_503(tiny_capacity) -> None:
    base, broken = tiny_capacity
    started = time.monotonic()
    response = httpx.post(broken.url, json=SHORT, timeout=60)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "server_error"
    assert time.monotonic() - started < 30
    # Other deployments on the same engine are unaffected.
    assert httpx.post(base.url, json=SHORT, timeout=60).status_code == 200


def test_invalid_requests_are_refused_before_the_engine(tiny_capacity) -> None:
    """Validation runs before the engine: with the only slot taken, a bad request is still a
    400, not a 429, and never waits for a slot."""
    base, _ = tiny_capacity
    with httpx.stream("POST", base.url, json=LONG, timeout=120) as streaming:
        next(streaming.iter_lines())  # the long request holds the only slot
        response = httpx.post(base.url, json={**SHORT, "n": 99}, timeout=10)
    assert response.status_code == 400
