"""``UpstreamEngine`` against a real vLLM (its CPU build from PyPI, tests/vllm_server.py)
serving the embedded model, float32, LoRA on: greedy outputs equal the local engine's for
the base model and for an adapter (loaded at run time under its content key), text streams
token by token, structured outputs go as vLLM's own parameters, an adapter vLLM lost (a
restart) is loaded again without failing the request, a dead upstream is skipped, and none
answering is ``EngineUnavailable``."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
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
from tests.vllm_server import VllmServer, vllm_server

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
    import json

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


def test_a_restarted_vllm_gets_its_adapters_again(vllm: VllmServer, adapter_b: AdapterRef
                                                  ) -> None:
    async def go() -> tuple[str, str]:
        engine = UpstreamEngine({EMBEDDED_MODEL_NAME: UpstreamSpec((vllm.url,))},
                                health_interval_s=3600)
        await engine.start()
        try:
            before = await collect(engine, ask(PROMPTS[2], adapter=adapter_b, max_tokens=8))
            await asyncio.to_thread(vllm.stop)
            with pytest.raises(EngineUnavailable):
                await collect(engine, ask(PROMPTS[2], adapter=adapter_b, max_tokens=8))
            await asyncio.to_thread(vllm.start)  # the same port; it knows no adapters now
            after = await collect(engine, ask(PROMPTS[2], adapter=adapter_b, max_tokens=8))
            return before.text, after.text
        finally:
            await engine.close()

    before, after = asyncio.run(go())
    assert before == after and before


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


def test_sampling_fields_are_forwarded() -> None:
    from arkor.engine.upstream import sampling_fields

    fields = sampling_fields(SamplingParams(max_tokens=5, temperature=0.3, top_k=5, seed=7,
                                            stop=("x",), logit_bias=((42, -100.0),),
                                            logprobs=2, min_tokens=1), chat=True)
    assert fields["max_tokens"] == 5 and fields["top_k"] == 5 and fields["seed"] == 7
    assert fields["logit_bias"] == {"42": -100.0} and fields["top_logprobs"] == 2
    assert fields["stop"] == ["x"] and fields["min_tokens"] == 1


def test_a_deployment_answers_through_vllm_with_the_openai_client(
        vllm: VllmServer, engine: LocalEngine, adapter_a: AdapterRef, adapter_b: AdapterRef,
        tmp_path: Path, models_dir: Path) -> None:
    """The edge unchanged in front of vLLM: a base-model target and an adapter target answer
    the official client, streamed and not, with the local engine's greedy text; a re-target
    to another adapter serves it on the next request."""
    import openai

    from arkor.cloud.settings import Settings
    from arkor.contract.artifacts import final_dir
    from arkor.server import create_app
    from tests.servers import LiveServer
    from tests.workspace import add_job, new_workspace

    settings = Settings(data_dir=tmp_path / "data", upstreams=((EMBEDDED_MODEL_NAME, vllm.url),))
    app = create_app(settings)
    with LiveServer(app) as url:
        cloud = type("Cloud", (), {"app": app, "settings": settings})()
        ws = new_workspace(url)
        jobs = {}
        for name, adapter in (("a", adapter_a), ("b", adapter_b)):
            jobs[name] = add_job(cloud, ws, name=name)
            with app.state.db.session() as session:  # type: ignore[attr-defined]
                from arkor.store.tables import Job

                artifacts = Path(session.get(Job, jobs[name]).artifacts_dir)
            shutil.copytree(adapter.path, final_dir(artifacts))
        base = ws.client.create_deployment(ws.scope, slug=f"vb-{ws.org_id[:8]}", auth_mode="none",
                                           target={"kind": "base_model",
                                                   "baseModel": EMBEDDED_MODEL_NAME})
        tuned = ws.client.create_deployment(
            ws.scope, slug=f"va-{ws.org_id[:8]}", auth_mode="none",
            target={"kind": "adapter", "adapter": {"kind": "final", "jobId": jobs["a"]}})
        messages = [{"role": "user", "content": PROMPTS[0]}]
        expected = local(engine, ask(PROMPTS[0], max_tokens=12),
                         ask(PROMPTS[0], adapter=adapter_a, max_tokens=12),
                         ask(PROMPTS[0], adapter=adapter_b, max_tokens=12))
        for deployment, want in ((base, expected[0]), (tuned, expected[1])):
            client = openai.OpenAI(base_url=deployment.base_url, api_key="x", max_retries=0)
            answer = client.chat.completions.create(model="x", messages=messages,  # type: ignore[arg-type]
                                                    max_tokens=12, temperature=0)
            assert answer.choices[0].message.content == want.text
            assert answer.usage is not None
            assert answer.usage.completion_tokens == want.finished.completion_tokens
            pieces = [chunk.choices[0].delta.content or ""
                      for chunk in client.chat.completions.create(
                          model="x", messages=messages, max_tokens=12, temperature=0,  # type: ignore[arg-type]
                          stream=True) if chunk.choices]
            assert "".join(pieces) == want.text and len(pieces) > 2
        ws.client.update_deployment(tuned.id, ws.scope, target={
            "kind": "adapter", "adapter": {"kind": "final", "jobId": jobs["b"]}})
        client = openai.OpenAI(base_url=tuned.base_url, api_key="x", max_retries=0)
        answer = client.chat.completions.create(model="x", messages=messages,  # type: ignore[arg-type]
                                                max_tokens=12, temperature=0)
        assert answer.choices[0].message.content == expected[2].text
