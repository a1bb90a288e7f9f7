"""Deployments answering through the official openai client, with the real model.

Each target kind (base model, a job's final adapter, a checkpoint) answers exactly what the
same weights give offline with plain transformers + PEFT; re-targeting, revoking, disabling
and switching auth apply from the very next request.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from arkor.engine.base import AdapterRef
from tests.edge.conftest import EMBEDDED, EdgeWorld
from tests.engine.conftest import Reference

TICKET = "I was charged twice for my subscription this month."
SENTENCE = "Les enfants dorment en haut."
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def reference(edge_world: EdgeWorld, embedded_model_dir) -> Reference:
    adapters = {"label": AdapterRef("label", edge_world.label_dir),
                "lang": AdapterRef("lang", edge_world.lang_dir),
                "ckpt": AdapterRef("ckpt", edge_world.checkpoint_dir(1))}
    reference = Reference(embedded_model_dir, adapters)
    reference.adapters = adapters
    return reference


def expected(reference: Reference, prompt: str, name: str | None) -> str:
    """What plain transformers + PEFT greedy decoding answers (``name`` None: the base)."""
    adapter = None if name is None else reference.adapters[name]
    return reference.text(prompt, adapter, MAX_TOKENS)


def deploy(world: EdgeWorld, slug: str, target: dict, auth_mode: str = "fixed_api_key"):
    deployment = world.ws.client.create_deployment(world.ws.scope, slug=slug, target=target,
                                                   auth_mode=auth_mode)
    key = world.ws.client.create_deployment_key(deployment.id, world.ws.scope, label="test")
    return deployment, key.plaintext, key.id


def final(job_id: str) -> dict:
    return {"kind": "adapter", "adapter": {"kind": "final", "jobId": job_id}}


def ask(client: openai.OpenAI, prompt: str, **kwargs) -> str:
    response = client.chat.completions.create(
        model="ignored", messages=[{"role": "user", "content": prompt}],
        max_tokens=MAX_TOKENS, temperature=0, **kwargs)
    return response.choices[0].message.content or ""


def test_each_target_kind_matches_offline_generation(edge_world, reference) -> None:
    base, _base_key, _ = deploy(edge_world, "e2e-base",
                               {"kind": "base_model", "baseModel": EMBEDDED}, "none")
    labels, labels_key, _ = deploy(edge_world, "e2e-labels", final(edge_world.label_job))
    ckpt, ckpt_key, _ = deploy(edge_world, "e2e-ckpt", {"kind": "adapter", "adapter": {
        "kind": "checkpoint", "jobId": edge_world.trained_job, "step": 1}})
    assert base.base_url == f"{edge_world.url}/d/e2e-base/v1"
    assert base.url == f"{edge_world.url}/d/e2e-base/v1/chat/completions"

    for deployment, key, name in ((base, "not-required", None), (labels, labels_key, "label"),
                                  (ckpt, ckpt_key, "ckpt")):
        client = openai.OpenAI(base_url=deployment.base_url, api_key=key)
        response = client.chat.completions.create(
            model="whatever", messages=[{"role": "user", "content": TICKET}],
            max_tokens=MAX_TOKENS, temperature=0)
        assert response.choices[0].message.content == expected(reference, TICKET, name)
        assert response.object == "chat.completion" and response.model == deployment.slug
        assert response.usage.completion_tokens > 0 and response.usage.prompt_tokens > 0
        assert response.choices[0].finish_reason in ("stop", "length")
        streamed = client.chat.completions.create(
            model="whatever", messages=[{"role": "user", "content": TICKET}],
            max_tokens=MAX_TOKENS, temperature=0, stream=True,
            stream_options={"include_usage": True})
        chunks = list(streamed)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == response.choices[0].message.content
        assert chunks[-1].usage.completion_tokens == response.usage.completion_tokens
        assert [m.id for m in client.models.list().data] == [deployment.slug]
    assert expected(reference, TICKET, "label") != expected(reference, TICKET, None)


def test_retarget_revoke_disable_and_auth_switch_apply_on_the_next_request(
        edge_world, reference) -> None:
    world = edge_world
    dep, key, key_id = deploy(world, "e2e-switch", final(world.label_job))
    client = openai.OpenAI(base_url=dep.base_url, api_key=key)
    assert ask(client, SENTENCE) == expected(reference, SENTENCE, "label")

    world.ws.client.update_deployment(dep.id, world.ws.scope, target=final(world.lang_job))
    assert ask(client, SENTENCE) == expected(reference, SENTENCE, "lang")

    world.ws.client.update_deployment(dep.id, world.ws.scope, enabled=False)
    with pytest.raises(openai.NotFoundError):
        ask(client, SENTENCE)
    world.ws.client.update_deployment(dep.id, world.ws.scope, enabled=True)
    assert client.models.list().data[0].id == "e2e-switch"

    anonymous = openai.OpenAI(base_url=dep.base_url, api_key="not-a-key")
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()
    world.ws.client.update_deployment(dep.id, world.ws.scope, auth_mode="none")
    assert anonymous.models.list().data[0].id == "e2e-switch"
    world.ws.client.update_deployment(dep.id, world.ws.scope, auth_mode="fixed_api_key")
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()
    assert client.models.list().data  # the existing key is enforced again, and works

    world.ws.client.revoke_deployment_key(dep.id, key_id, world.ws.scope)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()

    world.ws.client.delete_deployment(dep.id, world.ws.scope)
    with pytest.raises(openai.NotFoundError):
        anonymous.models.list()


def test_last_used_at_is_recorded_in_batches(edge_world) -> None:
    dep, key, _key_id = deploy(edge_world, "e2e-usage", final(edge_world.label_job))
    [listed] = edge_world.ws.client.list_deployment_keys(dep.id, edge_world.ws.scope)
    assert listed.last_used_at is None
    before = time.time()
    response = httpx.get(f"{dep.base_url}/models", headers={"x-api-key": key})
    assert response.status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        [listed] = edge_world.ws.client.list_deployment_keys(dep.id, edge_world.ws.scope)
        if listed.last_used_at:
            break
        time.sleep(0.3)
    assert listed.last_used_at is not None
    from datetime import datetime

    used = datetime.fromisoformat(listed.last_used_at.replace("Z", "+00:00")).timestamp()
    assert before - 1 <= used <= time.time() + 1


def test_twenty_concurrent_streams_over_three_adapters(edge_world, reference) -> None:
    world = edge_world
    targets = {"label": final(world.label_job), "lang": final(world.lang_job),
               "ckpt": {"kind": "adapter", "adapter": {"kind": "checkpoint",
                                                        "jobId": world.trained_job, "step": 1}}}
    clients = {}
    for name, target in targets.items():
        dep, key, _ = deploy(world, f"e2e-many-{name}", target)
        clients[name] = openai.AsyncOpenAI(base_url=dep.base_url, api_key=key)
    prompts = [TICKET, SENTENCE, "The export button gives me an empty file.",
               "Der Hund schläft im Garten.", "Do you have an office in Berlin?"]
    jobs = [(name, prompts[i % len(prompts)]) for i, name in
            enumerate(["label", "lang", "ckpt"] * 7)][:20]

    async def one(name: str, prompt: str) -> str:
        stream = await clients[name].chat.completions.create(
            model="x", messages=[{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS,
            temperature=0, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def all_of_them() -> list[str]:
        return await asyncio.gather(*(one(name, prompt) for name, prompt in jobs))

    answers = asyncio.run(all_of_them())
    for (name, prompt), answer in zip(jobs, answers, strict=True):
        assert answer == expected(reference, prompt, name), (name, prompt)


def test_inference_route_uses_the_same_engine(edge_world, reference) -> None:
    body = {"messages": [{"role": "user", "content": TICKET, "id": 1}],
            "adapter": {"kind": "final", "jobId": edge_world.label_job},
            "temperature": 0, "maxTokens": MAX_TOKENS}
    response = httpx.post(f"{edge_world.url}/v1/inference/chat", params=edge_world.params,
                          headers=edge_world.headers, json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == expected(
        reference, TICKET, "label")
    with httpx.stream("POST", f"{edge_world.url}/v1/inference/chat", params=edge_world.params,
                      headers=edge_world.headers, json={**body, "stream": True},
                      timeout=60) as streamed:
        lines = [line for line in streamed.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    import json

    text = "".join((json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get(
        "content") or "" for line in lines[:-1])
    assert text == expected(reference, TICKET, "label")
    checkpoint = {**body, "adapter": {"kind": "checkpoint", "jobId": edge_world.trained_job,
                                      "step": 1}}
    response = httpx.post(f"{edge_world.url}/v1/inference/chat", params=edge_world.params,
                          headers=edge_world.headers, json=checkpoint, timeout=60)
    assert response.json()["choices"][0]["message"]["content"] == expected(
        reference, TICKET, "ckpt")
    for bad, status in ((
            {**body, "adapter": {"kind": "final", "jobId": "nope"}}, 404),
            ({**body, "baseModel": EMBEDDED}, 400),
            ({"messages": [], "baseModel": EMBEDDED}, 400),
            ({**body, "tools": [{"type": "function", "function": {"name": "f g"}}]}, 400)):
        response = httpx.post(f"{edge_world.url}/v1/inference/chat", params=edge_world.params,
                              headers=edge_world.headers, json=bad, timeout=60)
        assert response.status_code == status, response.text
        assert isinstance(response.json()["error"], str)
