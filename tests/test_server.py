"""The composition root: one app where ``/d/<slug>`` goes to the edge and the rest to the
control plane, each answering in its own error shape; the control plane's
``/v1/inference/chat`` served by the edge's serving; the engine started on first use and
closed with the app. A scripted engine stands in for the model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from arkor._version import SDK_VERSION
from arkor.cloud.settings import Settings
from arkor.server import create_app
from tests.doubles.engine import ScriptedEngine, overloaded
from tests.servers import LiveServer
from tests.workspace import Workspace, new_workspace

EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass
class World:
    url: str
    engine: ScriptedEngine
    ws: Workspace

    def inference(self, **body: object) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/inference/chat", params=self.ws.scope.params(),
                          timeout=30, json={"baseModel": EMBEDDED, **body},
                          headers={"X-Arkor-Client": f"arkor/{SDK_VERSION}",
                                   "Authorization": f"Bearer {self.ws.credentials.token}"})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    engine = ScriptedEngine()
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("server")), engine=engine)
    with LiveServer(app) as url:
        yield World(url, engine, new_workspace(url))


def test_each_app_answers_its_own_paths_in_its_own_shape(world: World) -> None:
    assert httpx.get(f"{world.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{world.url}/no-such-route").json() == {"error": "Not found"}
    edge = httpx.get(f"{world.url}/d/no-such-bot/v1/models").json()["error"]
    assert edge["code"] == "deployment_not_found"


def test_inference_chat_is_answered_by_the_edge_serving(world: World) -> None:
    world.engine.script()
    world.engine.requests.clear()
    answer = world.inference(messages=[{"role": "user", "content": "hi"}], temperature=0.5,
                             topP=0.75, maxTokens=9)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "Hello there!"
    [request] = world.engine.requests
    assert (request.base_model, request.adapter) == (EMBEDDED, None)
    assert (request.sampling.temperature, request.sampling.top_p,
            request.sampling.max_tokens) == (0.5, 0.75, 9)

    streamed = world.inference(messages=[{"role": "user", "content": "hi"}], stream=True)
    events = [e.removeprefix("data: ") for e in streamed.text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["usage"]["completion_tokens"] == 3


def test_inference_overload_is_429_in_the_control_plane_shape(world: World) -> None:
    world.engine.script(overloaded(4.5))
    response = world.inference(messages=[{"role": "user", "content": "hi"}])
    assert response.status_code == 429 and response.headers["Retry-After"] == "5"
    assert isinstance(response.json()["error"], str)


def test_the_engine_starts_on_first_use_and_closes_with_the_app(tmp_path: Path) -> None:
    engine = ScriptedEngine()
    with LiveServer(create_app(Settings(data_dir=tmp_path), engine=engine)) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200 and not engine.started
        inference = World(url, engine, new_workspace(url)).inference(
            messages=[{"role": "user", "content": "hi"}])
        assert inference.status_code == 200 and engine.started and not engine.closed
    assert engine.closed
