"""``/api/deployments/{id}/runs*`` over real HTTP: calls made to a deployment's edge with the
openai client, then listed (filters and cursor passed on), read, marked, deleted and exported
(a file download) through a real Studio in front of a real control plane. A scripted engine
answers in place of the model: what is relayed is the Studio's doing, not the model's."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import openai
import pytest

from arkor.engine.base import EngineUnavailable
from arkor.studio.api_deployments import NO_USABLE_STATE
from arkor.studio.api_runs import EXPORT_TYPE, LIMIT_NOT_A_NUMBER, MARK_BODY
from tests import scripted
from tests.doubles.engine import ScriptedEngine, refused
from tests.studio.conftest import Studio

BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


world = scripted.scripted_world("studio-runs")
cloud = scripted.cloud
engine = scripted.engine


@dataclass
class Endpoint:
    studio: Studio
    deployment: dict
    key: str

    @property
    def runs(self) -> str:
        return f"/api/deployments/{self.deployment['id']}/runs"

    def chat(self, text: str, *, stream: bool = False) -> None:
        client = openai.OpenAI(base_url=self.deployment["baseUrl"], api_key=self.key,
                               max_retries=0)
        messages = [{"role": "user", "content": text}]
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in client.chat.completions
                           .create(model="x", messages=messages, stream=True) if c.choices)
        else:
            client.chat.completions.create(model="x", messages=messages, max_tokens=5)

    def list(self, **params: str) -> dict:
        response = self.studio.get(self.runs, params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(self, count: int) -> list[dict]:
        deadline = time.monotonic() + 10
        while True:
            runs = self.list()["runs"]
            if len(runs) >= count or time.monotonic() > deadline:
                assert len(runs) == count, runs
                return list(runs)
            time.sleep(0.1)


@pytest.fixture
def endpoint(studio: Studio, engine: ScriptedEngine) -> Endpoint:
    response = studio.post("/api/deployments", json={
        "slug": f"runs-{time.monotonic_ns() % 10**9}",
        "target": {"kind": "base_model", "baseModel": BASE_MODEL}})
    assert response.status_code == 200, response.text
    deployment = response.json()["deployment"]
    key = studio.post(f"/api/deployments/{deployment['id']}/keys", json={"label": "runs"})
    return Endpoint(studio, deployment, key.json()["key"]["plaintext"])


def test_a_call_is_listed_read_marked_and_deleted(endpoint: Endpoint) -> None:
    endpoint.chat("Where is my order?")
    endpoint.chat("Refund please", stream=True)
    newest, oldest = endpoint.wait(2)
    assert (newest["promptPreview"], oldest["promptPreview"]) == (
        "Refund please", "Where is my order?")
    assert newest["stream"] is True and oldest["stream"] is False
    assert oldest["status"] == "completed" and oldest["answerPreview"] == "Hello there!"
    assert endpoint.key.startswith(oldest["keyPrefix"])
    assert oldest["usage"] == {"promptTokens": 7, "completionTokens": 3}
    assert oldest["deploymentId"] == endpoint.deployment["id"]

    got = endpoint.studio.get(f"{endpoint.runs}/{oldest['id']}")
    assert got.status_code == 200
    run = got.json()["run"]
    assert run["request"]["messages"] == [{"role": "user", "content": "Where is my order?"}]
    assert run["request"]["max_tokens"] == 5
    assert run["response"]["choices"][0]["message"]["content"] == "Hello there!"
    assert endpoint.key not in got.text

    marked = endpoint.studio.patch(f"{endpoint.runs}/{oldest['id']}", json={"mark": "good"})
    assert (marked.status_code, marked.json()["run"]["mark"]) == (200, "good")
    assert [r["id"] for r in endpoint.list(mark="good")["runs"]] == [oldest["id"]]
    cleared = endpoint.studio.patch(f"{endpoint.runs}/{oldest['id']}", json={"mark": None})
    assert cleared.json()["run"]["mark"] is None
    assert endpoint.list(mark="good")["runs"] == []

    deleted = endpoint.studio.delete(f"{endpoint.runs}/{newest['id']}")
    assert (deleted.status_code, deleted.json()) == (200, {})
    assert [r["id"] for r in endpoint.list()["runs"]] == [oldest["id"]]
    gone = endpoint.studio.get(f"{endpoint.runs}/{newest['id']}")
    assert (gone.status_code, gone.json()) == (
        404, {"error": f"Run {newest['id']!r} not found on this deployment"})

    everything = endpoint.studio.delete(endpoint.runs)
    assert (everything.status_code, everything.json()) == (200, {"deleted": 1})
    assert endpoint.list() == {"runs": [], "nextCursor": None}


def test_the_list_passes_its_filters_and_cursor_on(endpoint: Endpoint,
                                                   engine: ScriptedEngine) -> None:
    for text in ("alpha one", "beta two", "gamma three"):
        endpoint.chat(text)
    engine.script(refused(EngineUnavailable("the engine is down")))
    with pytest.raises(openai.APIStatusError):
        endpoint.chat("delta four")
    endpoint.wait(4)

    first = endpoint.list(limit="3")
    assert [r["promptPreview"] for r in first["runs"]] == ["delta four", "gamma three",
                                                          "beta two"]
    assert first["nextCursor"]
    rest = endpoint.list(limit="3", cursor=first["nextCursor"])
    assert ([r["promptPreview"] for r in rest["runs"]], rest["nextCursor"]) == (
        ["alpha one"], None)

    [failed] = endpoint.list(status="failed")["runs"]
    assert failed["promptPreview"] == "delta four" and failed["error"]
    assert [r["promptPreview"] for r in endpoint.list(q="BETA")["runs"]] == ["beta two"]
    assert endpoint.list(status="completed", q="delta")["runs"] == []
    key_id = failed["keyId"]
    assert len(endpoint.list(keyId=key_id)["runs"]) == 4
    assert endpoint.list(**{"from": "2999-01-01T00:00:00Z"})["runs"] == []
    assert len(endpoint.list(to="2999-01-01T00:00:00Z")["runs"]) == 4

    refused_limit = endpoint.studio.get(endpoint.runs, params={"limit": "ten"})
    assert (refused_limit.status_code, refused_limit.json()) == (
        400, {"error": LIMIT_NOT_A_NUMBER})
    too_many = endpoint.studio.get(endpoint.runs, params={"limit": "500"})
    assert too_many.status_code == 400 and "limit" in too_many.json()["error"]
    bad_cursor = endpoint.studio.get(endpoint.runs, params={"cursor": "not-a-cursor"})
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["error"].startswith("cursor: ")


def test_the_export_is_a_file_download_of_the_chat_dataset(endpoint: Endpoint,
                                                           engine: ScriptedEngine) -> None:
    endpoint.chat("keep this one")
    endpoint.chat("and this one")
    engine.script(refused(EngineUnavailable("the engine is down")))
    with pytest.raises(openai.APIStatusError):
        endpoint.chat("not this one")
    runs = endpoint.wait(3)
    good = next(r for r in runs if r["promptPreview"] == "keep this one")
    endpoint.studio.patch(f"{endpoint.runs}/{good['id']}", json={"mark": "good"})
    slug = endpoint.deployment["slug"]

    everything = endpoint.studio.get(f"{endpoint.runs}/export")
    assert everything.status_code == 200
    assert everything.headers["content-type"] == EXPORT_TYPE
    assert everything.headers["content-disposition"] == f'attachment; filename="{slug}-runs.jsonl"'
    assert (everything.headers["x-arkor-exported"], everything.headers["x-arkor-skipped"]) == (
        "2", "1")
    lines = [json.loads(line) for line in everything.text.splitlines()]
    assert lines == [
        {"messages": [{"role": "user", "content": text},
                      {"role": "assistant", "content": "Hello there!"}]}
        for text in ("and this one", "keep this one")]

    only_good = endpoint.studio.get(f"{endpoint.runs}/export", params={"mark": "good"})
    assert only_good.headers["content-disposition"] == (
        f'attachment; filename="{slug}-runs-good.jsonl"')
    assert [json.loads(line)["messages"][0]["content"]
            for line in only_good.text.splitlines()] == ["keep this one"]
    assert only_good.headers["x-arkor-exported"] == "1"


@pytest.mark.parametrize("body", [
    "{not json", "[]", json.dumps({"mark": "great"}), json.dumps({}),
    json.dumps({"mark": "good", "note": "extra"}), json.dumps({"mark": 1}),
])
def test_a_mark_body_is_checked_before_any_call(endpoint: Endpoint, body: str) -> None:
    response = endpoint.studio.patch(f"{endpoint.runs}/any-run", content=body,
                                     headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"] == ("Invalid JSON body" if body == "{not json"
                                         else MARK_BODY)


def test_a_run_of_another_deployment_is_404(endpoint: Endpoint, studio: Studio) -> None:
    endpoint.chat("mine")
    [run] = endpoint.wait(1)
    other = studio.post("/api/deployments", json={
        "slug": f"other-{time.monotonic_ns() % 10**9}",
        "target": {"kind": "base_model", "baseModel": BASE_MODEL}}).json()["deployment"]
    response = studio.get(f"/api/deployments/{other['id']}/runs/{run['id']}")
    assert response.status_code == 404
    unknown = studio.get("/api/deployments/no-such-deployment/runs")
    assert (unknown.status_code, unknown.json()) == (
        404, {"error": "Deployment 'no-such-deployment' not found in this project"})


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/deployments/abc/runs"), ("DELETE", "/api/deployments/abc/runs"),
    ("GET", "/api/deployments/abc/runs/export"), ("GET", "/api/deployments/abc/runs/r"),
    ("PATCH", "/api/deployments/abc/runs/r"), ("DELETE", "/api/deployments/abc/runs/r"),
])
def test_without_state_every_runs_route_is_404(studio: Studio, method: str, path: str) -> None:
    body = {"mark": None} if method == "PATCH" else None
    response = studio.request(method, path, json=body)
    assert (response.status_code, response.json()) == (404, {"error": NO_USABLE_STATE})
    refused_token = studio.request(method, path, json=body, token="wrong")
    assert (refused_token.status_code, refused_token.json()) == (
        403, {"error": "Missing or invalid studio token"})
