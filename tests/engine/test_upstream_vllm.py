"""``UpstreamEngine`` against a real vLLM (its CPU build from PyPI, tests/vllm_server.py)
serving the embedded model, float32, LoRA on: greedy outputs equal the local engine's for
the base model and for an adapter (loaded at run time under its content key), text streams
token by token, structured outputs go as vLLM's own parameters, an adapter vLLM lost (a
restart) is loaded again without failing the request, a dead upstream is skipped, and none
answering is ``EngineUnavailable``."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from arkor.engine.base import (
    AdapterLoadError,
    AdapterRef,
    EngineUnavailable,
    SamplingParams,
)
from arkor.engine.local import LocalEngine
from arkor.engine.registry import EMBEDDED_MODEL_NAME, UpstreamSpec
from arkor.engine.upstream import UpstreamEngine, adapter_name
from tests.engine.conftest import Outcome, ask, collect
from tests.servers import free_port
from tests.vllm_server import START_TIMEOUT_S, VllmServer, vllm_server

# The module's vLLM server starts in the first test's setup, which pytest-timeout counts: on
# a slow 2-core day that setup alone took 292 s (START_TIMEOUT_S allows 240 s for the server
# to answer), so these tests get the server's start on top of the usual 300 s.
pytestmark = pytest.mark.timeout(300 + 2 * START_TIMEOUT_S)

PROMPTS = ("I was charged twice for my subscription this month.",
           "The app crashes when I open the settings page.",
           "Ich habe eine Frage zu meiner Rechnung.")


@pytest.fixture(scope="module")
def vllm(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[VllmServer]:
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    with vllm_server(embedded_model_dir, EMBEDDED_MODEL_NAME, log) as server:
        yield server


def run(vllm_urls: tuple[str, ...], *requests: Any, engine_out: list[UpstreamEngine] | None = None
        ) -> list[Outcome]:
    async def go() -> list[Outcome]:
        engine = UpstreamEngine({EMBEDDED_MODEL_NAME: UpstreamSpec(vllm_urls)},
                                health_interval_s=3600)
        await engine.start()
        try:
            if engine_out is not None:
                engine_out.append(engine)
            return [await collect(engine, request) for request in requests]  # type: ignore[arg-type]
        finally:
            await engine.close()

    return asyncio.run(go())


def local(engine: LocalEngine, *requests: Any) -> list[Outcome]:
    async def go() -> list[Outcome]:
        return [await collect(engine, request) for request in requests]

    return asyncio.run(go())


def test_greedy_output_equals_the_local_engine_for_the_base_model_and_an_adapter(
        vllm: VllmServer, engine: LocalEngine, adapter_a: AdapterRef) -> None:
    requests = [ask(p, adapter=adapter, max_tokens=24)
                for adapter in (None, adapter_a) for p in PROMPTS]
    upstream = run((vllm.url,), *requests)
    ours = local(engine, *requests)
    agree = [a.text == b.text for a, b in zip(upstream, ours, strict=True)]
    print(f"greedy agreement, vLLM vs LocalEngine: {sum(agree)}/{len(agree)}")
    assert all(agree), [(a.text, b.text) for a, b in zip(upstream, ours, strict=True)]
    for outcome, mine in zip(upstream, ours, strict=True):
        assert outcome.finished.completion_tokens == mine.finished.completion_tokens
        assert outcome.finished.prompt_tokens == mine.finished.prompt_tokens
    assert upstream[3].text != upstream[0].text  # the adapter answered, not the base model
    assert len(upstream[0].deltas) > 3  # streamed token by token, not in one piece


def test_an_adapter_is_served_under_its_content_key(vllm: VllmServer, adapter_a: AdapterRef,
                                                    tmp_path: Path) -> None:
    run((vllm.url,), ask(PROMPTS[0], adapter=adapter_a, max_tokens=2))
    served = {m["id"] for m in httpx.get(f"{vllm.url}/v1/models", timeout=10).json()["data"]}
    assert adapter_name(adapter_a) in served
    copy = tmp_path / "retrained"
    shutil.copytree(adapter_a.path, copy)
    (copy / "adapter_config.json").write_text(
        (copy / "adapter_config.json").read_text().replace('"r": 8', '"r": 8 '))
    assert adapter_name(AdapterRef(adapter_a.key, copy)) != adapter_name(adapter_a)


def test_structured_outputs_reach_vllm_as_its_own_parameters(vllm: VllmServer) -> None:
    import llguidance

    schema = '{"type": "object", "properties": {"label": {"enum": ["billing", "bug"]}}, ' \
             '"required": ["label"], "additionalProperties": false}'
    grammar = llguidance.grammar_from("json", schema)
    outcome, = run((vllm.url,), ask(PROMPTS[0], max_tokens=40, grammar=grammar))
    assert json.loads(outcome.text)["label"] in ("billing", "bug")


def test_a_dead_upstream_is_skipped_and_none_answering_is_unavailable(vllm: VllmServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    engines: list[UpstreamEngine] = []
    outcome, = run((dead, vllm.url), ask(PROMPTS[1], max_tokens=4), engine_out=engines)
    assert outcome.text
    down, up = engines[0].upstreams(EMBEDDED_MODEL_NAME)
    assert (down.healthy, up.healthy) == (False, True)
    with pytest.raises(EngineUnavailable, match="no upstream"):
        run((dead,), ask(PROMPTS[1], max_tokens=4))


def test_an_adapter_that_cannot_be_loaded_is_an_error_not_the_base_model(
        vllm: VllmServer, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text('{"r": 8, "peft_type": "LORA"}')
    (broken / "adapter_model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(AdapterLoadError, match=r"could not be loaded: the upstream .* answered"):
        run((vllm.url,), ask(PROMPTS[0], adapter=AdapterRef("job:broken:final", broken)))


def test_closing_the_stream_aborts_the_upstream_request(vllm: VllmServer) -> None:
    async def go() -> int:
        engine = UpstreamEngine({EMBEDDED_MODEL_NAME: UpstreamSpec((vllm.url,))},
                                health_interval_s=3600)
        await engine.start()
        try:
            events = engine.generate(ask(PROMPTS[0], max_tokens=400, ignore_eos=True))
            await anext(events)
            await events.aclose()
            for _ in range(50):  # vLLM notices the closed connection within a step or two
                metrics = httpx.get(f"{vllm.url}/metrics", timeout=10).text
                running = [line for line in metrics.splitlines()
                           if line.startswith("vllm:num_requests_running")]
                if running and all(line.rstrip().endswith(" 0.0") for line in running):
                    return 0
                await asyncio.sleep(0.2)
            return 1
        finally:
            await engine.close()

    assert asyncio.run(go()) == 0


def test_idle_connections_to_an_upstream_drop_before_it_would_close_them() -> None:
    """Against a stand-in for vLLM's server (uvicorn, which closes a connection idle for 5 s):
    health checks further apart than ``IDLE_CONNECTION_S`` each open a connection."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from arkor.engine.upstream import IDLE_CONNECTION_S
    from tests.servers import LiveServer

    ports: list[int] = []

    async def health(request: Any) -> Response:
        ports.append(request.client.port)
        return Response()

    async def three_checks(url: str) -> None:
        engine = UpstreamEngine({"m": UpstreamSpec(urls=(url,))},
                                health_interval_s=IDLE_CONNECTION_S + 0.5)
        await engine.start()
        try:
            while len(ports) < 3:
                await asyncio.sleep(0.1)
        finally:
            await engine.close()

    assert IDLE_CONNECTION_S <= 5 / 2
    with LiveServer(Starlette(routes=[Route("/health", health)])) as url:
        asyncio.run(asyncio.wait_for(three_checks(url), 30))
    assert len(set(ports)) == len(ports), ports


def test_sampling_fields_are_forwarded() -> None:
    from arkor.engine.upstream import sampling_fields

    fields = sampling_fields(SamplingParams(max_tokens=5, temperature=0.3, top_k=5, seed=7,
                                            stop=("x",), logit_bias=((42, -100.0),),
                                            logprobs=2, min_tokens=1), chat=True)
    assert fields["max_tokens"] == 5 and fields["top_k"] == 5 and fields["seed"] == 7
    assert fields["logit_bias"] == {"42": -100.0} and fields["top_logprobs"] == 2
    assert fields["stop"] == ["x"] and fields["min_tokens"] == 1


@dataclass
class EdgeWorld:
    url: str
    app: Any
    ws: Any
    jobs: dict[str, str]
    expected: dict[str, str]


@pytest.fixture(scope="module")
def edge(vllm: VllmServer, engine: LocalEngine, adapter_a: AdapterRef, adapter_b: AdapterRef,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeWorld]:
    """A real server whose embedded model is served by the vLLM above (``--upstream``), with
    a job whose final adapter is A and whose checkpoint at step 2 is B, and one whose final
    adapter is B; ``expected`` is the local engine's greedy answer to PROMPTS[0] each way."""
    from arkor.cloud.settings import Settings
    from arkor.contract.artifacts import final_dir
    from arkor.server import create_app
    from arkor.store.tables import Job
    from tests.servers import LiveServer
    from tests.workspace import add_job, new_workspace

    settings = Settings(data_dir=tmp_path_factory.mktemp("upstream-edge"),
                        upstreams=((EMBEDDED_MODEL_NAME, vllm.url),))
    app = create_app(settings)
    with LiveServer(app) as url:
        cloud = type("Cloud", (), {"app": app, "settings": settings})()
        ws = new_workspace(url)
        jobs = {"a": add_job(cloud, ws, name="a", checkpoint_steps=(2,)),
                "b": add_job(cloud, ws, name="b")}
        with app.state.db.session() as session:
            artifacts = {name: Path(session.get(Job, job).artifacts_dir)
                         for name, job in jobs.items()}
        shutil.copytree(adapter_a.path, final_dir(artifacts["a"]))
        shutil.copytree(adapter_b.path, artifacts["a"] / "step-2")
        shutil.copytree(adapter_b.path, final_dir(artifacts["b"]))
        want = local(engine, ask(PROMPTS[0], max_tokens=12),
                     ask(PROMPTS[0], adapter=adapter_a, max_tokens=12),
                     ask(PROMPTS[0], adapter=adapter_b, max_tokens=12))
        yield EdgeWorld(url, app, ws, jobs, {"base": want[0].text, "a": want[1].text,
                                             "b": want[2].text})


def deploy(world: EdgeWorld, slug: str, target: dict[str, Any], **options: Any) -> Any:
    ws = world.ws
    return ws.client.create_deployment(ws.scope, slug=f"{slug}-{ws.org_id[:8]}",
                                       target=target, **{"auth_mode": "none", **options})


def openai_client(base_url: str, key: str = "x") -> Any:
    import openai

    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)


def greedy(client: Any, model: str = "x", *, stream: bool = False) -> str:
    messages = [{"role": "user", "content": PROMPTS[0]}]
    if not stream:
        answer = client.chat.completions.create(model=model, messages=messages, max_tokens=12,
                                                temperature=0)
        assert answer.usage is not None and answer.usage.completion_tokens > 0
        return str(answer.choices[0].message.content)
    pieces = [chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
        model=model, messages=messages, max_tokens=12, temperature=0, stream=True)
        if chunk.choices]
    assert len(pieces) > 2  # token by token
    return "".join(pieces)


def test_each_target_kind_answers_through_vllm_with_the_openai_client(edge: EdgeWorld) -> None:
    """The edge unchanged in front of vLLM: a base model, a final adapter, a checkpoint and a
    model menu answer the official client, streamed and not, with the local engine's greedy
    text; a re-target to another adapter serves it on the next request."""
    jobs = edge.jobs
    cases = [
        (deploy(edge, "vb", {"kind": "base_model", "baseModel": EMBEDDED_MODEL_NAME}), "x",
         "base"),
        (deploy(edge, "va", {"kind": "adapter", "adapter": {"kind": "final",
                                                            "jobId": jobs["a"]}}), "x", "a"),
        (deploy(edge, "vc", {"kind": "adapter", "adapter": {"kind": "checkpoint",
                                                            "jobId": jobs["a"], "step": 2}}),
         "x", "b"),
        (deploy(edge, "vm", {"kind": "model_menu"}), EMBEDDED_MODEL_NAME, "base"),
    ]
    for deployment, model, answer in cases:
        client = openai_client(deployment.base_url)
        assert greedy(client, model) == edge.expected[answer], deployment.slug
        assert greedy(client, model, stream=True) == edge.expected[answer], deployment.slug
    tuned = cases[1][0]
    edge.ws.client.update_deployment(tuned.id, edge.ws.scope, target={
        "kind": "adapter", "adapter": {"kind": "final", "jobId": jobs["b"]}})
    assert greedy(openai_client(tuned.base_url)) == edge.expected["b"]


def test_tools_and_structured_outputs_through_vllm(edge: EdgeWorld) -> None:
    """Tool calls (required, named, auto, as the local engine's tests make them on the base
    model) and a JSON schema: grammars sent as vLLM's structured outputs."""
    import jsonschema

    from tests.edge.test_structured_e2e import NAMED, TRIAGE, auto_stream, forced_call

    deployment = deploy(edge, "vt", {"kind": "base_model", "baseModel": EMBEDDED_MODEL_NAME})
    import openai

    client = openai.AsyncOpenAI(base_url=deployment.base_url, api_key="x", max_retries=0)

    async def go() -> str:
        await forced_call(client, "required", stream=False)
        await forced_call(client, NAMED, stream=True)
        await auto_stream(client)
        answer = await client.chat.completions.create(
            model="x", messages=[{"role": "user", "content": f"Triage: {PROMPTS[1]}"}],
            max_tokens=80, temperature=0, response_format={
                "type": "json_schema",
                "json_schema": {"name": "triage", "strict": True, "schema": TRIAGE}})
        return answer.choices[0].message.content or ""

    jsonschema.validate(json.loads(asyncio.run(go())), TRIAGE)


def test_vllm_down_is_503_and_back_its_adapters_are_loaded_again(
        edge: EdgeWorld, vllm: VllmServer) -> None:
    """vLLM killed mid-test: calls fail with 503 in OpenAI's shape while it is down; once it
    is back (knowing no adapters) the adapter's calls succeed, reloaded without operator
    action."""
    import openai

    deployment = deploy(edge, "vr", {"kind": "adapter",
                                     "adapter": {"kind": "final", "jobId": edge.jobs["b"]}})
    client = openai_client(deployment.base_url)
    assert greedy(client) == edge.expected["b"]
    vllm.stop()
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            greedy(client)
        assert caught.value.status_code == 503
        body = caught.value.body
        assert isinstance(body, dict) and body["code"] == "engine_unavailable"
        assert body["type"] == "server_error"
    finally:
        vllm.start()  # the same port
    assert greedy(client) == edge.expected["b"]
    assert greedy(client, stream=True) == edge.expected["b"]


@pytest.mark.postgres
def test_two_arkor_servers_on_one_postgresql_share_vllm(vllm: VllmServer, edge: EdgeWorld,
                                                        tmp_path: Path) -> None:
    """Two servers, one database, one vLLM: a key made through one answers through the other;
    revoked through one, it is refused by the other on its next request."""
    import os

    import openai

    from arkor.cloud.settings import Settings
    from arkor.server import create_app
    from tests.edge.test_multi_process import settle
    from tests.servers import POSTGRES_ENV, LiveServer, postgres_schema_url
    from tests.workspace import new_workspace

    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set")
    upstreams = ((EMBEDDED_MODEL_NAME, vllm.url),)
    with postgres_schema_url() as url:
        first = create_app(Settings(data_dir=tmp_path / "a", database_url=url,
                                    upstreams=upstreams))
        second = create_app(Settings(data_dir=tmp_path / "b", database_url=url,
                                     upstreams=upstreams))
        with LiveServer(first) as url_a, LiveServer(second) as url_b:
            ws = new_workspace(url_a)
            dep = ws.client.create_deployment(ws.scope, slug="pair", target={
                "kind": "base_model", "baseModel": EMBEDDED_MODEL_NAME})
            key = ws.client.create_deployment_key(dep.id, ws.scope, label="k")
            for base in (url_a, url_b):
                client = openai_client(f"{base}/d/pair/v1", key.plaintext)
                assert greedy(client) == edge.expected["base"]
            ws.client.revoke_deployment_key(dep.id, key.id, ws.scope)
            on_b = openai_client(f"{url_b}/d/pair/v1", key.plaintext)

            def refused() -> bool:
                try:
                    greedy(on_b)
                except openai.AuthenticationError:
                    return True
                return False

            settle(refused)
