"""``/api/deployments/{id}/usage*`` over real HTTP: calls made to a deployment's edge with the
openai client under two keys (and one without a key), then read back through a real Studio in
front of a real control plane: the report with its query passed on, and the per-key totals,
which add up to the report's. A scripted engine answers in place of the model (7 prompt
tokens and 3 completion tokens a call), so every count is known."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import openai
import pytest

from arkor.contract.deployments import AUTH_NONE
from arkor.engine.base import EngineUnavailable
from arkor.studio.api_deployments import NO_USABLE_STATE
from tests import scripted
from tests.doubles.engine import PROMPT_TOKENS, Reply, ScriptedEngine, refused
from tests.studio.conftest import Studio

BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
COMPLETION_TOKENS = len(Reply().deltas)
DAY = timedelta(days=1)


world = scripted.scripted_world("studio-usage")
cloud = scripted.cloud
engine = scripted.engine


def new_deployment(studio: Studio) -> dict:
    response = studio.post("/api/deployments", json={
        "slug": f"usage-{time.monotonic_ns() % 10**9}",
        "target": {"kind": "base_model", "baseModel": BASE_MODEL}})
    assert response.status_code == 200, response.text
    return dict(response.json()["deployment"])


def issue_key(studio: Studio, deployment: dict, label: str) -> str:
    response = studio.post(f"/api/deployments/{deployment['id']}/keys", json={"label": label})
    assert response.status_code == 200, response.text
    return str(response.json()["key"]["plaintext"])


def chat(deployment: dict, key: str, *, stream: bool = False) -> None:
    client = openai.OpenAI(base_url=deployment["baseUrl"], api_key=key, max_retries=0)
    messages = [{"role": "user", "content": "Where is my order?"}]
    if stream:
        assert list(client.chat.completions.create(model="x", messages=messages, stream=True))
    else:
        client.chat.completions.create(model="x", messages=messages, max_tokens=5)


def usage(studio: Studio, deployment: dict, path: str = "", **params: str) -> dict:
    response = studio.get(f"/api/deployments/{deployment['id']}/usage{path}", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_for(studio: Studio, deployment: dict, requests: int) -> dict:
    """The report once the recorder has counted ``requests`` calls (it writes every half
    second)."""
    deadline = time.monotonic() + 10
    while True:
        report = usage(studio, deployment)
        if report["total"]["requests"] >= requests or time.monotonic() > deadline:
            assert report["total"]["requests"] == requests, report
            return report
        time.sleep(0.1)


def test_the_usage_of_each_key_adds_up_to_the_deployment_s(studio: Studio,
                                                           engine: ScriptedEngine) -> None:
    deployment = new_deployment(studio)
    alpha, beta = issue_key(studio, deployment, "alpha"), issue_key(studio, deployment, "beta")
    chat(deployment, alpha)
    chat(deployment, alpha, stream=True)
    chat(deployment, alpha)
    chat(deployment, beta)
    engine.script(refused(EngineUnavailable("the engine is down")))
    with pytest.raises(openai.APIStatusError):
        chat(deployment, beta)
    patched = studio.patch(f"/api/deployments/{deployment['id']}", json={"authMode": AUTH_NONE})
    assert patched.status_code == 200, patched.text
    chat(deployment, "not-required")

    report = wait_for(studio, deployment, 6)
    total = report["total"]
    answered = 5
    assert report["granularity"] == "hour"
    assert (total["promptTokens"], total["completionTokens"]) == (
        answered * PROMPT_TOKENS, answered * COMPLETION_TOKENS)
    assert total["errors"] == {"4xx": 0, "5xx": 1} and total["cancelled"] == 0
    assert total["latencyMsP50"] is not None and total["latencyMsP95"] is not None
    assert sum(b["requests"] for b in report["buckets"]) == 6
    for bucket in report["buckets"]:
        start = datetime.fromisoformat(bucket["start"])
        assert start.minute == start.second == 0 and start > datetime.now(UTC) - DAY

    per_key = usage(studio, deployment, "/keys")
    assert "plaintext" not in str(per_key) and alpha not in str(per_key)
    assert beta not in str(per_key)
    by_label = {row["key"]["label"]: row for row in per_key["keys"]}
    assert set(by_label) == {"alpha", "beta"}
    assert alpha.startswith(by_label["alpha"]["key"]["prefix"])
    assert [(by_label[k]["usage"]["requests"], by_label[k]["usage"]["promptTokens"],
             by_label[k]["usage"]["completionTokens"], by_label[k]["usage"]["errors"])
            for k in ("alpha", "beta")] == [
        (3, 3 * PROMPT_TOKENS, 3 * COMPLETION_TOKENS, {"4xx": 0, "5xx": 0}),
        (2, PROMPT_TOKENS, COMPLETION_TOKENS, {"4xx": 0, "5xx": 1})]
    for field in ("requests", "promptTokens", "completionTokens"):  # the keyless call is the rest
        keyed = sum(row["usage"][field] for row in per_key["keys"])
        assert total[field] - keyed == {"requests": 1, "promptTokens": PROMPT_TOKENS,
                                        "completionTokens": COMPLETION_TOKENS}[field]

    alpha_id = by_label["alpha"]["key"]["id"]
    only_alpha = usage(studio, deployment, keyId=alpha_id)
    assert only_alpha["total"] == by_label["alpha"]["usage"]


def test_the_query_is_passed_on_and_judged_upstream(studio: Studio,
                                                    engine: ScriptedEngine) -> None:
    deployment = new_deployment(studio)
    key = issue_key(studio, deployment, "only")
    chat(deployment, key)
    wait_for(studio, deployment, 1)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = today.replace(day=1).isoformat()

    daily = usage(studio, deployment, granularity="day", **{"from": since})
    assert daily["granularity"] == "day"
    assert [(datetime.fromisoformat(b["start"]), b["requests"]) for b in daily["buckets"]] == [
        (today, 1)]
    assert datetime.fromisoformat(daily["since"]) == datetime.fromisoformat(since)
    [row] = usage(studio, deployment, "/keys", **{"from": since})["keys"]
    assert row["usage"]["requests"] == 1
    earlier = usage(studio, deployment, **{"from": "2020-01-01T00:00:00Z",
                                           "to": "2020-01-02T00:00:00Z"})
    assert (earlier["buckets"], earlier["total"]["requests"]) == ([], 0)
    assert usage(studio, deployment, keyId="no-such-key")["total"]["requests"] == 0

    for params, message in [
        ({"from": "2999-01-01T00:00:00Z"}, "from must be before to"),
        ({"from": "2020-01-01T00:00:00Z", "to": "2022-01-01T00:00:00Z"},
         "At most 400 days at a time"),
    ]:
        for path in ("", "/keys"):
            refused_query = studio.get(f"/api/deployments/{deployment['id']}/usage{path}",
                                       params=params)
            assert (refused_query.status_code, refused_query.json()) == (
                400, {"error": message})
    weekly = studio.get(f"/api/deployments/{deployment['id']}/usage",
                        params={"granularity": "week"})
    assert weekly.status_code == 400 and "granularity" in weekly.json()["error"]


@pytest.mark.parametrize(("segment", "deployment_id"), [
    ("no-such-deployment", "no-such-deployment"), ("a%3FkeyId=b", "a?keyId=b")])
def test_an_unknown_deployment_is_404(studio: Studio, engine: ScriptedEngine, segment: str,
                                      deployment_id: str) -> None:
    new_deployment(studio)
    for path in (f"/api/deployments/{segment}/usage", f"/api/deployments/{segment}/usage/keys"):
        response = studio.get(path)
        assert (response.status_code, response.json()) == (
            404, {"error": f"Deployment {deployment_id!r} not found in this project"})


@pytest.mark.parametrize("path", ["/api/deployments/abc/usage",
                                  "/api/deployments/abc/usage/keys"])
def test_without_state_every_usage_route_is_404(studio: Studio, path: str) -> None:
    response = studio.get(path)
    assert (response.status_code, response.json()) == (404, {"error": NO_USABLE_STATE})
    refused_token = studio.get(path, token="wrong")
    assert (refused_token.status_code, refused_token.json()) == (
        403, {"error": "Missing or invalid studio token"})
