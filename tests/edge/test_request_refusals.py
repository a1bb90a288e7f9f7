"""Every malformed variant of the OpenAI request surface is a 400 in OpenAI's shape with
``param`` naming the field, never a 5xx, and nothing reaches the engine (grammars are checked
before queueing). A scripted engine stands in for the model; the table runs in a second."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from arkor.cloud.settings import Settings
from arkor.server import create_app
from tests.doubles.engine import ScriptedEngine
from tests.edge.conftest import EMBEDDED
from tests.servers import LiveServer
from tests.workspace import new_workspace

HI = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
FLAT_WEATHER = {"type": "function", "name": "get_weather",
                "parameters": WEATHER["function"]["parameters"]}
OPEN_OBJECT = {"type": "object", "properties": {"a": {"type": "string"}}}
NOT_SCHEMA = {"type": "object", "properties": {"a": {"not": {"type": "string"}}}}


def fmt(schema: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, **extra}}


def chat(**fields: Any) -> dict[str, Any]:
    return {"messages": HI, **fields}


def tool_chat(*tools: Any, **fields: Any) -> dict[str, Any]:
    return chat(tools=list(tools), **fields)


def with_history(*messages: Any) -> dict[str, Any]:
    return {"messages": [*HI, *messages]}


CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"}}

CHAT = [
    (chat(response_format="json"), "response_format"),
    (chat(response_format={"type": "xml"}), "response_format.type"),
    (chat(response_format={"type": "json_schema"}), "response_format.json_schema"),
    (chat(response_format={"type": "json_schema", "json_schema": {"schema": OPEN_OBJECT}}),
     "response_format.json_schema.name"),
    (chat(response_format=fmt([1])), "response_format.json_schema.schema"),
    (chat(response_format=fmt(OPEN_OBJECT, strict=True)), "response_format.json_schema.schema"),
    (chat(response_format=fmt(OPEN_OBJECT, strict="yes")), "response_format.json_schema.strict"),
    (chat(response_format=fmt(NOT_SCHEMA)), "response_format.json_schema.schema"),
    (chat(response_format=fmt({"$ref": "#/$defs/missing"})),
     "response_format.json_schema.schema"),
    (chat(response_format=fmt({"type": "objeckt"})), "response_format.json_schema.schema"),
    (chat(structured_outputs="json"), "structured_outputs"),
    (chat(structured_outputs={}), "structured_outputs"),
    (chat(structured_outputs={"regex": "a+", "choice": ["a"]}), "structured_outputs"),
    (chat(structured_outputs={"choice": []}), "structured_outputs.choice"),
    (chat(structured_outputs={"choice": ["a", 1]}), "structured_outputs.choice"),
    (chat(structured_outputs={"regex": "[a-"}), "structured_outputs.regex"),
    (chat(structured_outputs={"regex": ""}), "structured_outputs.regex"),
    (chat(structured_outputs={"grammar": "   "}), "structured_outputs.grammar"),
    (chat(structured_outputs={"grammar": "start: undefined_rule"}),
     "structured_outputs.grammar"),
    (chat(structured_outputs={"json": "{not json"}), "structured_outputs.json"),
    (chat(structured_outputs={"json": NOT_SCHEMA}), "structured_outputs.json"),
    (chat(structured_outputs={"json_object": False}), "structured_outputs.json_object"),
    (chat(structured_outputs={"structural_tag": "{}"}), "structured_outputs.structural_tag"),
    (chat(structured_outputs={"json_object": True, "disable_any_whitespace": "yes"}),
     "structured_outputs.disable_any_whitespace"),
    (chat(structured_outputs={"regex": "a+"}, response_format={"type": "json_object"}),
     "structured_outputs"),
    (chat(guided_regex="[a-"), "guided_regex"),
    (chat(guided_choice=["a"], guided_regex="a"), "guided_choice"),
    (chat(tools={"type": "function"}), "tools"),
    (tool_chat("get_weather"), "tools[0]"),
    (tool_chat({"type": "retrieval"}), "tools[0].type"),
    (tool_chat({"type": "function"}), "tools[0].function"),
    (tool_chat({"type": "function", "function": {}}), "tools[0].function.name"),
    (tool_chat({"type": "function", "function": {"name": "get weather"}}),
     "tools[0].function.name"),
    (tool_chat(WEATHER, WEATHER), "tools[1].function.name"),
    (tool_chat({"type": "function", "function": {"name": "f", "parameters": []}}),
     "tools[0].function.parameters"),
    (tool_chat({"type": "function", "function": {"name": "f", "parameters": NOT_SCHEMA}}),
     "tools[0].function.parameters"),
    (tool_chat({"type": "function", "function": {"name": "f", "parameters": OPEN_OBJECT,
                                                 "strict": True}}),
     "tools[0].function.parameters"),
    (tool_chat({"type": "function", "function": {"name": "f", "strict": 1}}),
     "tools[0].function.strict"),
    (tool_chat(WEATHER, tool_choice="sometimes"), "tool_choice"),
    (chat(tool_choice="required"), "tool_choice"),
    (tool_chat(WEATHER, tool_choice={"type": "function", "function": {"name": "nope"}}),
     "tool_choice.function.name"),
    (tool_chat(WEATHER, tool_choice={"type": "function"}), "tool_choice.function.name"),
    (chat(tool_choice={"type": "function", "function": {"name": "get_weather"}}),
     "tool_choice.function.name"),
    (tool_chat(WEATHER, parallel_tool_calls="yes"), "parallel_tool_calls"),
    (chat(functions=[{"name": "f"}]), "functions"),
    (chat(function_call="auto"), "function_call"),
    (with_history({"role": "assistant", "tool_calls": {}}), "messages[1].tool_calls"),
    (with_history({"role": "assistant", "tool_calls": [{**CALL, "id": None}]}),
     "messages[1].tool_calls[0].id"),
    (with_history({"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}),
     "messages[1].tool_calls[0].function"),
    (with_history({"role": "assistant", "tool_calls": [
        {**CALL, "function": {"arguments": "{}"}}]}), "messages[1].tool_calls[0].function.name"),
    (with_history({"role": "assistant", "tool_calls": [
        {**CALL, "function": {"name": "f", "arguments": 3}}]}),
     "messages[1].tool_calls[0].function.arguments"),
    (with_history({"role": "tool", "content": "sunny"}), "messages[1].tool_call_id"),
    (with_history({"role": "tool", "tool_call_id": "call_1"}), "messages[1].content"),
    (with_history({"role": "function", "content": "x"}), "messages[1].role"),
    (chat(logprobs="yes"), "logprobs"),
    (chat(logprobs=True, top_logprobs=21), "top_logprobs"),
    (chat(logprobs=True, top_logprobs=-1), "top_logprobs"),
    (chat(top_logprobs=2), "top_logprobs"),
    (chat(n=0), "n"),
    (chat(n=9), "n"),
    (chat(n=1.5), "n"),
    (chat(presence_penalty=2.5), "presence_penalty"),
    (chat(frequency_penalty=-3), "frequency_penalty"),
    (chat(presence_penalty="0.5"), "presence_penalty"),
    (chat(logit_bias=[1]), "logit_bias"),
    (chat(logit_bias={"hello": 5}), "logit_bias"),
    (chat(logit_bias={"-1": 5}), "logit_bias"),
    (chat(logit_bias={"007": 5}), "logit_bias"),
    (chat(logit_bias={"99999999999": 5}), "logit_bias"),
    (chat(logit_bias={"12": 101}), "logit_bias"),
    (chat(logit_bias={"12": "ban"}), "logit_bias"),
    (chat(stop=["s"] * 17), "stop"),
    (chat(top_k=-2), "top_k"),
    (chat(top_k=1.5), "top_k"),
    (chat(min_p=1.5), "min_p"),
    (chat(repetition_penalty=0), "repetition_penalty"),
    (chat(repetition_penalty=3), "repetition_penalty"),
    (chat(min_tokens=-1), "min_tokens"),
    (chat(min_tokens=10, max_tokens=5), "min_tokens"),
    (chat(ignore_eos="yes"), "ignore_eos"),
    (chat(max_completion_tokens=0), "max_completion_tokens"),
    (chat(max_completion_tokens=10**9), "max_tokens"),
    (chat(stream_options="usage"), "stream_options"),
    (chat(audio={"voice": "alloy"}), "audio"),
    (chat(modalities=["text", "audio"]), "modalities"),
    (chat(use_beam_search=True), "use_beam_search"),
]

COMPLETIONS = [
    ({}, "prompt"),
    ({"prompt": 3}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": ["a", 2]}, "prompt"),
    ({"prompt": ["a"] * 65}, "prompt"),
    ({"prompt": "a", "suffix": "z"}, "suffix"),
    ({"prompt": "a", "best_of": 3}, "best_of"),
    ({"prompt": "a", "logprobs": 21}, "logprobs"),
    ({"prompt": "a", "logprobs": True}, "logprobs"),
    ({"prompt": "a", "echo": "yes"}, "echo"),
    ({"prompt": "a", "echo": True, "logprobs": 1, "stream": True}, "echo"),
    ({"prompt": "a", "max_tokens": -1}, "max_tokens"),
    ({"prompt": "a", "n": 9}, "n"),
    ({"prompt": "a", "temperature": -1}, "temperature"),
    ({"prompt": "a", "structured_outputs": {"regex": "(a"}}, "structured_outputs.regex"),
]

RESPONSES = [
    ({}, "input"),
    ({"input": 3}, "input"),
    ({"input": []}, "input"),
    ({"input": "hi", "instructions": 3}, "instructions"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0]"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
     "input[0].call_id"),
    ({"input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
    ({"input": "hi", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": "hi", "conversation": "conv_1"}, "conversation"),
    ({"input": "hi", "background": True}, "background"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
    ({"input": "hi", "tools": [FLAT_WEATHER], "tool_choice": {"type": "function",
                                                              "name": "nope"}},
     "tool_choice.name"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "schema": OPEN_OBJECT}}},
     "text.format.name"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x",
                                         "schema": NOT_SCHEMA}}}, "text.format.schema"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x", "strict": True,
                                         "schema": OPEN_OBJECT}}}, "text.format.schema"),
    ({"input": "hi", "text": "json"}, "text"),
    ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "hi", "max_output_tokens": 10**9}, "max_output_tokens"),
    ({"input": "hi", "temperature": 3}, "temperature"),
    ({"input": "hi", "top_logprobs": 30}, "top_logprobs"),
    ({"input": "hi", "include": "logprobs"}, "include"),
]


@dataclass
class Served:
    engine: ScriptedEngine
    base_url: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    engine = ScriptedEngine()
    settings = Settings(data_dir=tmp_path_factory.mktemp("refusals"))
    with LiveServer(create_app(settings, engine=engine)) as url:
        ws = new_workspace(url)
        deployment = ws.client.create_deployment(
            ws.scope, slug="refusals", auth_mode="none",
            target={"kind": "base_model", "baseModel": EMBEDDED})
        yield Served(engine, deployment.base_url)


def refused(served: Served, route: str, body: dict[str, Any]) -> dict[str, Any]:
    served.engine.requests.clear()
    response = httpx.post(f"{served.base_url}/{route}", json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["type"] == "invalid_request_error"
    assert served.engine.requests == [], "a refused request reached the engine"
    return error


@pytest.mark.parametrize(("body", "param"), CHAT)
def test_malformed_chat_fields_are_400_with_param(served: Served, body: dict[str, Any],
                                                  param: str) -> None:
    assert refused(served, "chat/completions", body)["param"] == param


@pytest.mark.parametrize(("body", "param"), COMPLETIONS)
def test_malformed_completions_fields_are_400_with_param(served: Served, body: dict[str, Any],
                                                         param: str) -> None:
    assert refused(served, "completions", body)["param"] == param


@pytest.mark.parametrize(("body", "param"), RESPONSES)
def test_malformed_responses_fields_are_400_with_param(served: Served, body: dict[str, Any],
                                                       param: str) -> None:
    assert refused(served, "responses", body)["param"] == param


def test_unenforceable_schema_features_are_named(served: Served) -> None:
    error = refused(served, "chat/completions", chat(response_format=fmt(NOT_SCHEMA)))
    assert error["code"] == "unsupported_schema" and '"not"' in error["message"]
    error = refused(served, "chat/completions", chat(response_format=fmt(
        OPEN_OBJECT, strict=True)))
    assert error["code"] == "invalid_schema" and "additionalProperties" in error["message"]


def test_other_model_ids_are_404(served: Served) -> None:
    response = httpx.get(f"{served.base_url}/models/gpt-4o", timeout=30)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    model = httpx.get(f"{served.base_url}/models/refusals", timeout=30).json()
    assert model == {"id": "refusals", "object": "model", "created": 0, "owned_by": "arkor"}


JUNK = [0, -1, 1.5, True, "x", "", [], {}, [{}], [1, "a"], {"type": "function"},
        {"a": {"b": []}}, {"type": "json_schema", "json_schema": {}}]
FIELDS = {
    "chat/completions": ["response_format", "structured_outputs", "tools", "tool_choice",
                         "parallel_tool_calls", "logprobs", "top_logprobs", "n", "logit_bias",
                         "presence_penalty", "top_k", "min_p", "min_tokens", "ignore_eos",
                         "guided_json", "guided_choice", "stop", "seed"],
    "completions": ["prompt", "echo", "logprobs", "best_of", "suffix", "max_tokens"],
    "responses": ["input", "instructions", "text", "tools", "tool_choice", "include",
                  "top_logprobs", "max_output_tokens", "max_tool_calls"],
}
BASES = {"chat/completions": {"messages": HI}, "completions": {"prompt": "hi"},
         "responses": {"input": "hi"}}


@pytest.mark.parametrize("route", list(FIELDS))
def test_junk_in_any_new_field_is_answered_or_refused_never_a_5xx(served: Served,
                                                                  route: str) -> None:
    with httpx.Client(timeout=30) as client:
        for name in FIELDS[route]:
            for value in JUNK:
                response = client.post(f"{served.base_url}/{route}",
                                       json={**BASES[route], name: value})
                assert response.status_code in (200, 400), (name, value, response.text)
                if response.status_code == 400:
                    assert response.json()["error"]["param"], (name, value)
