"""The control plane's ``POST /v1/inference/chat`` is metered like a deployment's calls, over
real HTTP with the scripted engine (7 prompt and 3 completion tokens a call unless told
otherwise): plain and streamed answers from the engine's counts, a client that walks out of a
stream counts what was generated, a refusal counts as a 4xx, nothing is kept as a run, and the
project summary's deployments and ``inference`` add up to its total."""

from __future__ import annotations

import time

import httpx
import openai
from sqlalchemy import func, select

from arkor.contract.deployments import AUTH_NONE, TARGET_BASE_MODEL
from arkor.store.tables import Run
from tests import scripted
from tests.conftest import CloudServer
from tests.doubles.engine import PROMPT_TOKENS, Reply
from tests.edge.conftest import EMBEDDED
from tests.workspace import Workspace, new_workspace

HI = [{"role": "user", "content": "Where is my order?"}]
CLIENT = {"X-Arkor-Client": "arkor/0.1.0"}

world = scripted.scripted_world("inference-usage")
cloud = scripted.cloud
engine = scripted.engine


def headers(ws: Workspace) -> dict[str, str]:
    return {**CLIENT, "Authorization": f"Bearer {ws.credentials.token}"}


def infer(cloud: CloudServer, ws: Workspace, **body: object) -> httpx.Response:
    return httpx.post(f"{cloud.url}/v1/inference/chat", params=ws.scope.params(),
                      headers=headers(ws), timeout=30,
                      json={"baseModel": EMBEDDED, "messages": HI, **body})


def project_usage(cloud: CloudServer, ws: Workspace) -> dict:
    response = httpx.get(f"{cloud.url}/v1/usage", params=ws.scope.params(),
                         headers=headers(ws), timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_usage(cloud: CloudServer, ws: Workspace, requests: int) -> dict:
    deadline = time.monotonic() + 10
    while True:
        summary = project_usage(cloud, ws)
        if summary["total"]["requests"] >= requests or time.monotonic() > deadline:
            assert summary["total"]["requests"] == requests, summary
            return summary
        time.sleep(0.1)


def test_inference_calls_are_counted_from_the_engine(cloud, engine) -> None:
    ws = new_workspace(cloud.url, "inference-metered")
    answer = infer(cloud, ws)
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] == 3
    with httpx.stream("POST", f"{cloud.url}/v1/inference/chat", params=ws.scope.params(),
                      headers=headers(ws), timeout=30,
                      json={"baseModel": EMBEDDED, "messages": HI, "stream": True}) as response:
        assert response.status_code == 200
        assert list(response.iter_lines())[-2:] == ["data: [DONE]", ""]
    engine.script(Reply(deltas=tuple(f" w{i}" for i in range(40)), pause=0.05))
    with httpx.stream("POST", f"{cloud.url}/v1/inference/chat", params=ws.scope.params(),
                      headers=headers(ws), timeout=30,
                      json={"baseModel": EMBEDDED, "messages": HI, "stream": True}) as response:
        for line in response.iter_lines():
            if '" w4"' in line:
                break
    refused = infer(cloud, ws, temperature=-1.0)
    assert refused.status_code == 400, refused.text

    wait_usage(cloud, ws, 4)
    time.sleep(0.5)  # the walk-out's engine row ends a moment after the client left
    summary = project_usage(cloud, ws)
    inference = summary["inference"]
    assert inference["requests"] == 4 and summary["deployments"] == []
    # The walk-out's prompt is reported by the engine only at its end, which never came.
    assert inference["promptTokens"] == 2 * PROMPT_TOKENS
    generated = inference["completionTokens"] - 2 * 3
    assert 5 <= generated < 40  # the tokens the walk-out was sent, not its max
    assert inference["cancelled"] == 1 and inference["errors"] == {"4xx": 1, "5xx": 0}
    assert inference["latencyMsP50"] is not None and inference["latencyMsMean"] > 0
    assert summary["total"] == inference
    with cloud.app.state.db.session() as session:  # type: ignore[attr-defined]
        assert session.execute(select(func.count()).select_from(Run).where(
            Run.project_id == ws.project_id)).scalar_one() == 0  # counted, never kept


def test_the_project_summary_adds_up(cloud, engine) -> None:
    ws = new_workspace(cloud.url, "inference-summary")
    deployment = ws.client.create_deployment(
        ws.scope, slug=f"summed-{ws.org_id[:8]}", auth_mode=AUTH_NONE,
        target={"kind": TARGET_BASE_MODEL, "baseModel": EMBEDDED})
    bot = openai.OpenAI(base_url=deployment.base_url, api_key="unused", max_retries=0)
    bot.chat.completions.create(model="x", messages=HI)  # type: ignore[arg-type]
    bot.chat.completions.create(model="x", messages=HI)  # type: ignore[arg-type]
    assert infer(cloud, ws).status_code == 200

    summary = wait_usage(cloud, ws, 3)
    [own] = summary["deployments"]
    assert (own["deploymentId"], own["slug"]) == (deployment.id, deployment.slug)
    assert own["total"]["requests"] == 2 and summary["inference"]["requests"] == 1
    for name in ("requests", "promptTokens", "completionTokens", "cancelled"):
        assert summary["total"][name] == own["total"][name] + summary["inference"][name]
    assert summary["total"]["completionTokens"] == 3 * 3
    assert sum(b["requests"] for b in summary["buckets"]) == 3
    hourly = httpx.get(f"{cloud.url}/v1/usage", headers=headers(ws), timeout=30,
                       params={**ws.scope.params(), "granularity": "hour"}).json()
    assert sum(b["requests"] for b in hourly["buckets"]) == 3
    report = ws.client.get_project_usage(ws.scope)
    assert report.inference.requests == 1 and report.deployments[0].total.requests == 2
    assert ws.client.get_usage(deployment.id, ws.scope).total.requests == 2
