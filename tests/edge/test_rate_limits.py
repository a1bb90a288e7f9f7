"""Rate limits at the edge over real HTTP, one server (SQLite: the counters in its memory),
with the scripted engine: 429s in OpenAI's shape with ``Retry-After``, OpenAI's
``x-ratelimit-*`` headers on every answer of a limited key or deployment, tokens per minute
counting streams' completion tokens, concurrent requests under 32 parallel calls, and what
happens when the shared counters cannot be reached. Across processes: test_rate_limits_shared.py.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from arkor.cloud.settings import Settings
from arkor.edge.rate_limits import reset_header
from arkor.sdk import Deployment, ProjectScope
from arkor.server import create_app
from tests.doubles.engine import Reply, ScriptedEngine
from tests.edge.conftest import EMBEDDED
from tests.edge.limits_support import fresh_window, limit_headers, parallel, reset_seconds
from tests.servers import LiveServer
from tests.workspace import Workspace, new_workspace

WINDOW_S = 2
HI = {"messages": [{"role": "user", "content": "hi"}]}
REQUEST_HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
                   "x-ratelimit-reset-requests")
TOKEN_HEADERS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
                 "x-ratelimit-reset-tokens")


@dataclass
class Edge:
    engine: ScriptedEngine
    url: str
    ws: Workspace

    def deployment(self, slug: str) -> Deployment:
        return self.ws.client.create_deployment(
            self.ws.scope, slug=slug, target={"kind": "base_model", "baseModel": EMBEDDED})

    def key(self, deployment: Deployment, label: str = "k") -> tuple[str, str]:
        key = self.ws.client.create_deployment_key(deployment.id, self.ws.scope, label=label)
        return key.id, key.plaintext

    @property
    def scope(self) -> ProjectScope:
        return self.ws.scope


def call(deployment: Deployment, key: str, **body: object) -> httpx.Response:
    return httpx.post(deployment.url or "", headers={"Authorization": f"Bearer {key}"},
                      json={**HI, **body}, timeout=30)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    engine = ScriptedEngine()
    settings = Settings(data_dir=tmp_path_factory.mktemp("limits"),
                        rate_limit_window_s=WINDOW_S)
    with LiveServer(create_app(settings, engine=engine)) as url:
        yield Edge(engine, url, new_workspace(url))


@pytest.fixture(autouse=True)
def clean_engine(edge: Edge) -> Iterator[None]:
    edge.engine.script()
    edge.engine.requests.clear()
    yield
    assert edge.engine.open_generations == 0


def test_requests_per_minute_admit_n_then_429_with_headers_then_the_next_window(
        edge: Edge) -> None:
    dep = edge.deployment("rpm-bot")
    limited_id, limited = edge.key(dep, "limited")
    _, free = edge.key(dep, "free")
    edge.ws.client.update_deployment_key(dep.id, limited_id, edge.scope,
                                         limits={"requests_per_minute": 3})
    fresh_window(WINDOW_S)
    remaining = []
    for _ in range(3):
        answer = call(dep, limited)
        assert answer.status_code == 200, answer.text
        headers = limit_headers(answer)
        assert set(headers) == set(REQUEST_HEADERS)  # no token limit: no token headers
        assert headers["x-ratelimit-limit-requests"] == "3"
        assert 0 < reset_seconds(headers["x-ratelimit-reset-requests"]) <= WINDOW_S
        remaining.append(headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]

    refused = call(dep, limited)
    assert refused.status_code == 429
    assert refused.json() == {"error": {
        "message": refused.json()["error"]["message"], "type": "requests", "param": None,
        "code": "rate_limit_exceeded"}}
    assert refused.json()["error"]["message"].startswith(
        "Rate limit reached for requests per minute on this API key: limit 3, used 3.")
    reset = reset_seconds(refused.headers["x-ratelimit-reset-requests"])
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["retry-after"] == str(max(1, math.ceil(reset)))
    assert len(edge.engine.requests) == 3, "a refused call reached the engine"

    unlimited = call(dep, free)  # another key of the deployment: no limit, no headers
    assert unlimited.status_code == 200 and limit_headers(unlimited) == {}

    time.sleep(reset + 0.05)
    again = call(dep, limited)
    assert again.status_code == 200, again.text
    assert again.headers["x-ratelimit-remaining-requests"] == "2"


def test_a_call_is_within_its_deployments_limit_and_its_keys(edge: Edge) -> None:
    dep = edge.deployment("both-bot")
    first_id, first = edge.key(dep, "first")
    _, second = edge.key(dep, "second")
    edge.ws.client.update_deployment(dep.id, edge.scope, limits={"requests_per_minute": 4})
    edge.ws.client.update_deployment_key(dep.id, first_id, edge.scope,
                                         limits={"requests_per_minute": 2})
    fresh_window(WINDOW_S)
    answer = call(dep, first)  # the tighter of the two is shown: the key's
    assert (answer.headers["x-ratelimit-limit-requests"],
            answer.headers["x-ratelimit-remaining-requests"]) == ("2", "1")
    assert call(dep, first).status_code == 200
    refused = call(dep, first)
    assert refused.status_code == 429 and "this API key" in refused.json()["error"]["message"]
    # The key's refusal did not count against the deployment: 2 of its 4 are left.
    assert [(a.headers["x-ratelimit-limit-requests"],
             a.headers["x-ratelimit-remaining-requests"])
            for a in (call(dep, second), call(dep, second))] == [("4", "1"), ("4", "0")]
    refused = call(dep, second)
    assert refused.status_code == 429
    assert "on this deployment: limit 4, used 4" in refused.json()["error"]["message"]


def test_tokens_per_minute_count_prompt_and_completion_tokens_of_streams(edge: Edge) -> None:
    dep = edge.deployment("tpm-bot")
    _, key = edge.key(dep)
    edge.ws.client.update_deployment(dep.id, edge.scope, limits={"tokens_per_minute": 20})
    # 1 prompt token and 6 completion tokens a call; a stream without include_usage too.
    edge.engine.script(*[Reply(deltas=("a",) * 6, prompt_tokens=1)] * 4)
    fresh_window(WINDOW_S)
    seen = []
    for stream in (True, True, False):
        answer = call(dep, key, stream=stream)
        assert answer.status_code == 200, answer.text
        assert set(limit_headers(answer)) == set(TOKEN_HEADERS)
        assert answer.headers["x-ratelimit-limit-tokens"] == "20"
        seen.append(answer.headers["x-ratelimit-remaining-tokens"])
    assert seen == ["20", "13", "6"]  # the tokens spent before each call
    refused = call(dep, key, stream=True)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "tokens"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "tokens per minute on this deployment: limit 20, used 21" in (
        refused.json()["error"]["message"])
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert int(refused.headers["retry-after"]) >= 1
    assert len(edge.engine.requests) == 3


def test_concurrent_requests_hold_under_32_parallel_calls(edge: Edge) -> None:
    dep = edge.deployment("busy-bot")
    key_id, key = edge.key(dep)
    edge.ws.client.update_deployment_key(dep.id, key_id, edge.scope,
                                         limits={"concurrent_requests": 4})
    edge.engine.script(*[Reply(pause=0.4)] * 32)  # 1.2 s a call: all 32 overlap
    answers = parallel(32, lambda i: call(dep, key, stream=i % 2 == 0))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 4 + [429] * 28, [a.text for a in answers if a.status_code >= 500]
    for refused in (a for a in answers if a.status_code == 429):
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
        assert "at most 4 at once" in error["message"]
        assert refused.headers["retry-after"] == "1"
    assert len(edge.engine.requests) == 4
    assert call(dep, key).status_code == 200  # every slot was given back


def test_a_new_limit_applies_from_the_next_call(edge: Edge) -> None:
    dep = edge.deployment("change-bot")
    key_id, key = edge.key(dep)
    fresh_window(WINDOW_S)
    assert limit_headers(call(dep, key)) == {}
    edge.ws.client.update_deployment_key(dep.id, key_id, edge.scope,
                                         limits={"requests_per_minute": 1})
    assert call(dep, key).status_code == 200
    assert call(dep, key).status_code == 429
    edge.ws.client.update_deployment_key(dep.id, key_id, edge.scope,
                                         limits={"requests_per_minute": None})
    lifted = call(dep, key)
    assert lifted.status_code == 200 and limit_headers(lifted) == {}


@pytest.fixture(scope="module")
def unreachable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Edge]]:
    """Two servers whose Redis cannot be reached: one admits, one refuses."""
    engines = {policy: ScriptedEngine() for policy in ("open", "closed")}
    apps = {policy: create_app(unreachable_settings(tmp_path_factory.mktemp(policy), policy),
                               engine=engine) for policy, engine in engines.items()}
    with LiveServer(apps["open"]) as open_url, LiveServer(apps["closed"]) as closed_url:
        yield {policy: Edge(engines[policy], url, new_workspace(url))
               for policy, url in (("open", open_url), ("closed", closed_url))}


def unreachable_settings(data_dir: Path, failure: str) -> Settings:
    return Settings(data_dir=data_dir, redis_url="redis://127.0.0.1:1/0",
                    rate_limit_failure=failure)


def test_unreachable_counters_admit_when_open_and_warn_once(
        unreachable: dict[str, Edge], caplog: pytest.LogCaptureFixture) -> None:
    edge = unreachable["open"]
    dep = edge.deployment("open-bot")
    key_id, key = edge.key(dep)
    edge.ws.client.update_deployment_key(dep.id, key_id, edge.scope,
                                         limits={"requests_per_minute": 1})
    with caplog.at_level(logging.WARNING, logger="arkor.edge"):
        answers = [call(dep, key) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(limit_headers(a) == {} for a in answers)
    warnings = [r for r in caplog.records if "rate limits cannot be checked" in r.getMessage()]
    assert len(warnings) == 1 and "ARKOR_RATE_LIMIT_FAILURE=open" in warnings[0].getMessage()


def test_unreachable_counters_refuse_with_503_when_closed(unreachable: dict[str, Edge]) -> None:
    edge = unreachable["closed"]
    dep = edge.deployment("closed-bot")
    key_id, key = edge.key(dep)
    _, free = edge.key(dep, "free")
    edge.ws.client.update_deployment_key(dep.id, key_id, edge.scope,
                                         limits={"concurrent_requests": 1})
    refused = call(dep, key)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["type"] == "server_error"
    assert refused.json()["error"]["code"] == "rate_limit_unavailable"
    assert call(dep, free).status_code == 200  # a key without limits never asks the store


@pytest.mark.parametrize(("seconds", "shown"), [
    (0.2501, "260ms"), (0.999, "1s"), (12.341, "12.35s"), (12.3, "12.3s"), (59.999, "1m0s"),
    (75.0, "1m15s")])
def test_a_reset_is_shown_to_the_hundredth_and_never_before_the_window_ends(
        seconds: float, shown: str) -> None:
    assert reset_header(seconds) == shown.encode()
    assert reset_seconds(shown) >= seconds
