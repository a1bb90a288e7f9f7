"""``infer``: the typed keyword arguments become ``POST /v1/inference/chat``'s camelCase body
(None left out), the same from both clients; the answer is the chat completion."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from arkor import AsyncCloudApiClient, BadRequestError, CloudApiClient, FinalAdapter

SCOPE = {"orgSlug": "acme", "projectSlug": "demo"}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]
COMPLETION = {"object": "chat.completion", "choices": [
    {"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
                                                            "content": None}}]}


def recording() -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if json.loads(request.content).get("toolChoice") == "sometimes":
            return httpx.Response(400, json={"error": "tool_choice must be none, auto, ..."})
        return httpx.Response(200, json=COMPLETION)

    return seen, httpx.MockTransport(answer)


OPTIONS: dict[str, Any] = {
    "temperature": 0, "top_p": 0.9, "max_tokens": 32, "tools": TOOLS,
    "tool_choice": "required", "parallel_tool_calls": False,
    "response_format": {"type": "json_object"}, "structured_outputs": None}
EXPECTED_BODY = {
    "messages": [{"role": "user", "content": "Weather in Oslo?"}], "stream": False,
    "adapter": {"kind": "final", "jobId": "job-1"}, "temperature": 0, "topP": 0.9,
    "maxTokens": 32, "tools": TOOLS, "toolChoice": "required", "parallelToolCalls": False,
    "responseFormat": {"type": "json_object"}}


def test_infer_sends_the_camel_case_body() -> None:
    seen, transport = recording()
    client = CloudApiClient(base_url="http://cloud.test", token="t", transport=transport)
    answer = client.infer(SCOPE, messages=[{"role": "user", "content": "Weather in Oslo?"}],
                          adapter=FinalAdapter(job_id="job-1"), **OPTIONS)
    assert answer == COMPLETION
    [request] = seen
    assert request.url.path == "/v1/inference/chat"
    assert dict(request.url.params) == SCOPE
    assert json.loads(request.content) == EXPECTED_BODY
    with pytest.raises(BadRequestError, match="tool_choice"):
        client.infer(SCOPE, messages=[], base_model="m", tool_choice="sometimes")


def test_the_async_client_sends_the_same() -> None:
    seen, transport = recording()

    async def scenario() -> dict[str, Any]:
        async with AsyncCloudApiClient(base_url="http://cloud.test", token="t",
                                       transport=transport) as client:
            return await client.infer(
                SCOPE, messages=[{"role": "user", "content": "Weather in Oslo?"}],
                adapter={"kind": "final", "jobId": "job-1"}, **OPTIONS)

    assert asyncio.run(scenario()) == COMPLETION
    assert json.loads(seen[0].content) == EXPECTED_BODY
