"""The edge's HTTP surface: OpenAI error shapes, routing by Host and by path, curl and the
JavaScript quick start with the real ``openai`` npm package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import note_missing
from tests.edge.conftest import EMBEDDED, EdgeWorld
from tests.locks import making


@pytest.fixture(scope="module")
def open_base(edge_world: EdgeWorld):
    return edge_world.ws.client.create_deployment(
        edge_world.ws.scope, slug="wire-base", auth_mode="none",
        target={"kind": "base_model", "baseModel": EMBEDDED})


@pytest.fixture(scope="module")
def keyed(edge_world: EdgeWorld):
    dep = edge_world.ws.client.create_deployment(
        edge_world.ws.scope, slug="wire-keyed",
        target={"kind": "adapter", "adapter": {"kind": "final", "jobId": edge_world.label_job}})
    key = edge_world.ws.client.create_deployment_key(dep.id, edge_world.ws.scope, label="k")
    return dep, key.plaintext


HI = {"messages": [{"role": "user", "content": "hi"}]}


def raw_body(extra: str = "", content: str = '"hi"') -> bytes:
    """A body ``httpx``'s ``json=`` cannot send: NaN, lone surrogates, huge integers."""
    fields = f', {extra}' if extra else ""
    return f'{{"messages": [{{"role": "user", "content": {content}}}]{fields}}}'.encode()


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert response.headers["x-request-id"]
    return error


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
         "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 3}, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"},
         "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1.5}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "top_p": 0}, "top_p"),
        ({"messages": [{"role": "user", "content": "hi"}], "stop": [1]}, "stop"),
        ({"messages": [{"role": "user", "content": "hi"}], "stop": ["a"] * 17}, "stop"),
        ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 99}, "n"),
        ({"messages": [{"role": "user", "content": "hi"}],
          "tools": [{"type": "function", "function": {"name": "f g"}}]},
         "tools[0].function.name"),
        ({"messages": [{"role": "user", "content": "hi"}],
          "response_format": {"type": "xml"}}, "response_format.type"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, None, id="100k-deep-array"),
        pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, None, id="100k-deep-object"),
        pytest.param({**HI, "metadata": nested(100)}, None, id="100-deep-ignored-field"),
        (raw_body(content=r'"\ud800"'), "messages[0].content"),
        (raw_body(content=r'[{"type": "text", "text": "ok \udfff"}]'),
         "messages[0].content[0].text"),
        (raw_body(content='"raw S"').replace(b"S", b"\xed\xa0\x80"), "messages[0].content"),
        (raw_body(r'"stop": ["\ud83d"]'), "stop[0]"),
        ({**HI, "seed": 2**63}, "seed"),
        ({**HI, "seed": 2**64}, "seed"),
        ({**HI, "seed": -(2**63) - 1}, "seed"),
        ({**HI, "seed": 1.5}, "seed"),
        ({**HI, "seed": True}, "seed"),
        ({**HI, "seed": "7"}, "seed"),
        (raw_body('"temperature": NaN'), "temperature"),
        (raw_body('"top_p": Infinity'), "top_p"),
        (raw_body('"temperature": -Infinity'), "temperature"),
        (raw_body(f'"temperature": {10**400}'), "temperature"),
        ({**HI, "top_p": True}, "top_p"),
        ({**HI, "max_tokens": 10**30}, "max_tokens"),
        ({**HI, "max_completion_tokens": True}, "max_completion_tokens"),
        ({**HI, "n": True}, "n"),
    ],
)
def test_malformed_requests_are_400_with_param(open_base, body, param) -> None:
    if isinstance(body, bytes):
        response = httpx.post(open_base.url, content=body, timeout=30,
                              headers={"content-type": "application/json"})
    else:
        response = httpx.post(open_base.url, json=body, timeout=30)
    error = openai_error(response, 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_seed_takes_the_signed_64_bit_range(open_base) -> None:
    for seed in (-(2**63), -1, 2**63 - 1):
        response = httpx.post(open_base.url, json={**HI, "seed": seed, "max_tokens": 2},
                              timeout=60)
        assert response.status_code == 200, response.text


def test_invalid_json_and_prompt_too_long(open_base) -> None:
    error = openai_error(httpx.post(open_base.url, content=b"{nope",
                                    headers={"content-type": "application/json"}), 400)
    assert error["code"] == "invalid_json"
    huge = "lorem ipsum " * 6000
    response = httpx.post(open_base.url, json={"messages": [{"role": "user", "content": huge}]},
                          timeout=120)
    error = openai_error(response, 400)
    assert error["param"] == "messages" and error["code"] == "context_length_exceeded"


def test_ignored_fields_and_model_field(open_base) -> None:
    response = httpx.post(open_base.url, timeout=60, json={
        "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
        "user": "u1", "presence_penalty": 0.5, "metadata": {"a": "b"}, "store": False,
        "developer_extra": 1, "temperature": 0})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "wire-base"
    assert response.json()["choices"][0]["finish_reason"] == "length"


def test_unknown_disabled_and_routes(edge_world, open_base) -> None:
    error = openai_error(httpx.post(f"{edge_world.url}/d/no-such-thing/v1/chat/completions",
                                    json={}), 404)
    assert error["code"] == "deployment_not_found"
    error = openai_error(httpx.get(f"{open_base.base_url}/embeddings"), 404)
    assert "POST /v1/chat/completions" in error["message"]
    openai_error(httpx.get(f"{open_base.base_url}/completions"), 405)
    # GET on the chat route is OpenAI's list of stored completions (none were stored here).
    assert httpx.get(f"{open_base.base_url}/chat/completions").json()["data"] == []


def test_request_id_is_echoed_or_made(open_base) -> None:
    response = httpx.get(f"{open_base.base_url}/models", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert httpx.get(f"{open_base.base_url}/models").headers["x-request-id"].startswith("req_")


def test_auth_headers(keyed) -> None:
    dep, key = keyed
    assert httpx.get(f"{dep.base_url}/models", headers={"x-api-key": key}).status_code == 200
    assert httpx.get(f"{dep.base_url}/models",
                     headers={"Authorization": f"Bearer {key}"}).status_code == 200
    for headers in ({}, {"Authorization": f"Basic {key}"}, {"x-api-key": key + "x"},
                    {"x-api-key": key[:-1] + ("A" if key[-1] != "A" else "B")},
                    {"Authorization": "Bearer sk-openai-style-key"}):
        error = openai_error(httpx.get(f"{dep.base_url}/models", headers=headers), 401)
        assert error["type"] == "authentication_error" and key not in error["message"]


def test_host_routing_with_curl(edge_world, keyed) -> None:
    dep, key = keyed
    port = edge_world.url.rsplit(":", 1)[1]
    body = json.dumps({"model": "ignored", "messages": [{"role": "user", "content": "Hello!"}],
                       "max_tokens": 5, "temperature": 0})
    for url in (dep.url, f"http://wire-keyed.localhost:{port}/v1/chat/completions"):
        result = subprocess.run(
            ["curl", "-sS", "-X", "POST", url, "-H", "Content-Type: application/json",
             "-H", f"Authorization: Bearer {key}", "-d", body],
            capture_output=True, text=True, timeout=60, check=True)
        answer = json.loads(result.stdout)
        assert answer["object"] == "chat.completion" and answer["model"] == "wire-keyed"
    # The bare edge domain is the control plane, not a deployment.
    result = subprocess.run(["curl", "-sS", f"http://localhost:{port}/healthz"],
                            capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(result.stdout) == {"status": "ok"}


JS_SAMPLE = """\
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.BASE_URL,
  apiKey: process.env.API_KEY,
});

async function main() {
  const response = await client.chat.completions.create({
    model: "ignored",
    messages: [{ role: "user", content: "Hello!" }],
    max_tokens: 8,
    temperature: 0,
  });
  console.log(JSON.stringify({ text: response.choices[0].message.content,
                               usage: response.usage }));
  const stream = await client.chat.completions.create({
    model: "ignored",
    messages: [{ role: "user", content: "Hello!" }],
    max_tokens: 8,
    temperature: 0,
    stream: true,
  });
  let streamed = "";
  for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
  console.log(JSON.stringify({ streamed }));
}

main();
"""


@pytest.fixture(scope="session")
def node_openai(request: pytest.FixtureRequest) -> Path:
    """The real ``openai`` npm package, installed once per checkout into pytest's cache."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        fix = "install Node.js 20 and npm (apt-get install -y nodejs npm)"
        if os.environ.get("CI"):
            pytest.fail(f"Node.js and npm are needed for the JavaScript quick-start test: {fix}")
        note_missing("Node.js and npm (the JavaScript quick-start test)", fix)
        pytest.skip(f"Node.js and npm are missing: {fix}")
    folder = Path(request.config.cache.mkdir("node-openai-5.23.2"))
    installed = folder / "node_modules" / "openai" / "package.json"
    with making(folder):
        if not installed.is_file():
            (folder / "package.json").write_text('{"type": "module", "private": true}\n')
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "openai@5.23.2"],
                           cwd=folder, check=True, capture_output=True, timeout=300)
    return folder


def test_javascript_quick_start_with_the_openai_npm_package(node_openai, keyed) -> None:
    dep, key = keyed
    script = node_openai / "quickstart.mjs"
    script.write_text(JS_SAMPLE)
    result = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/usr/local/bin", "BASE_URL": dep.base_url,
                                 "API_KEY": key})
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["text"] and first["usage"]["completion_tokens"] > 0
    assert second["streamed"] == first["text"]
