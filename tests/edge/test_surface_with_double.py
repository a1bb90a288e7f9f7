"""The full request surface on the wire, with a scripted engine: what each field becomes in
the engine's request, and how the engine's text becomes OpenAI's answers (tool calls, ``n``
choices, log-probabilities, legacy completions, the Responses API), read back by the official
``openai`` client. What the real model does under these constraints is in
``test_structured_e2e.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest
from pydantic import BaseModel

from arkor.cloud.settings import Settings
from arkor.engine.base import ChatMessage, TextDelta, TokenLogprob, ToolCall, ToolSpec, TopLogprob
from arkor.server import create_app
from tests.doubles.engine import PROMPT_TOKENS, Reply, ScriptedEngine
from tests.edge.conftest import EMBEDDED
from tests.servers import LiveServer
from tests.workspace import Workspace, new_workspace

HI = [{"role": "user", "content": "hi"}]
PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}},
              "required": ["city"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                            "parameters": PARAMETERS}}
FLAT_WEATHER = {"type": "function", "name": "get_weather", "parameters": PARAMETERS}
CALL_TEXT = ("Let me look. ", "<tool_", 'call>\n{"name": "get_weather", "arguments": {"ci',
             'ty": "Paris"}}\n</tool_call>')
ONLY_CALL = ('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>',)


class City(BaseModel):
    name: str
    population: int


@dataclass
class Served:
    engine: ScriptedEngine
    base_url: str
    url: str
    ws: Workspace

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    engine = ScriptedEngine()
    settings = Settings(data_dir=tmp_path_factory.mktemp("surface"), max_n=4)
    with LiveServer(create_app(settings, engine=engine)) as url:
        ws = new_workspace(url)
        deployment = ws.client.create_deployment(
            ws.scope, slug="surface", auth_mode="none",
            target={"kind": "base_model", "baseModel": EMBEDDED})
        yield Served(engine, deployment.base_url, url, ws)


@pytest.fixture
def engine(served: Served) -> Iterator[ScriptedEngine]:
    served.engine.script()
    served.engine.requests.clear()
    yield served.engine
    assert served.engine.open_generations == 0, "the edge left an engine generation open"


def test_sampling_fields_reach_the_engine(served: Served, engine: ScriptedEngine) -> None:
    served.client().chat.completions.create(
        model="ignored", messages=[{"role": "developer", "content": "Terse."}, *HI],
        presence_penalty=0.5, frequency_penalty=-1, logit_bias={"42": -100, "7": 2.5},
        seed=3, stop=[f"s{i}" for i in range(16)], max_completion_tokens=9,
        reasoning_effort="low", verbosity="low", store=True, metadata={"a": "b"}, user="u",
        service_tier="auto", prediction={"type": "content", "content": "x"},
        web_search_options={}, modalities=["text"],
        extra_body={"top_k": 5, "min_p": 0.1, "repetition_penalty": 1.2, "min_tokens": 2,
                    "ignore_eos": True})
    [request] = engine.requests
    assert request.messages[0] == ChatMessage("system", "Terse.")
    s = request.sampling
    assert (s.presence_penalty, s.frequency_penalty, s.logit_bias, s.seed, len(s.stop),
            s.max_tokens) == (0.5, -1.0, ((7, 2.5), (42, -100.0)), 3, 16, 9)
    assert (s.top_k, s.min_p, s.repetition_penalty, s.min_tokens, s.ignore_eos) == (
        5, 0.1, 1.2, 2, True)
    assert s.grammar is None and s.logprobs is None and request.tools == ()


def test_n_choices_are_rows_with_their_own_seeds(served: Served, engine: ScriptedEngine) -> None:
    engine.script(*(Reply(deltas=(f"answer {i}",)) for i in range(3)))
    answer = served.client().chat.completions.create(model="x", messages=HI, n=3, seed=10)
    assert sorted(c.message.content for c in answer.choices) == [
        "answer 0", "answer 1", "answer 2"]
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert sorted(r.sampling.seed for r in engine.requests) == [10, 11, 12]
    assert answer.usage.prompt_tokens == PROMPT_TOKENS and answer.usage.completion_tokens == 3
    engine.script(*(Reply(deltas=("a", f"{i}")) for i in range(2)))
    chunks = list(served.client().chat.completions.create(
        model="x", messages=HI, n=2, stream=True, stream_options={"include_usage": True}))
    texts: dict[int, str] = {}
    finishes = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert sorted(texts.values()) == ["a0", "a1"] and finishes == {0: "stop", 1: "stop"}
    assert chunks[-1].usage.completion_tokens == 4


def test_tool_calls_come_back_as_tool_calls(served: Served, engine: ScriptedEngine) -> None:
    engine.script(Reply(deltas=CALL_TEXT))
    answer = served.client().chat.completions.create(model="x", messages=HI, tools=[WEATHER])
    [request] = engine.requests
    assert request.tools == (ToolSpec("get_weather", "Weather.", PARAMETERS),)
    assert request.sampling.grammar and "<tool_call>" in request.sampling.grammar
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me look. "
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather", {"city": "Paris"})

    engine.script(Reply(deltas=ONLY_CALL))
    answer = served.client().chat.completions.create(
        model="x", messages=HI, tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert answer.choices[0].message.content is None
    assert answer.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_tool_calls_stream_as_openai_deltas(served: Served, engine: ScriptedEngine) -> None:
    engine.script(Reply(deltas=CALL_TEXT))
    chunks = list(served.client().chat.completions.create(
        model="x", messages=HI, tools=[WEATHER], tool_choice="auto", stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == "Let me look. "
    calls = [d.tool_calls[0] for d in deltas if d.tool_calls]
    assert calls[0].index == 0 and calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather" and calls[0].type == "function"
    assert len(calls) >= 3, "the arguments stream in fragments"
    assert json.loads("".join(c.function.arguments or "" for c in calls)) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    engine.script(Reply(deltas=CALL_TEXT))
    with served.client().chat.completions.stream(model="x", messages=HI,
                                                 tools=[WEATHER]) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_tool_history_reaches_the_engine(served: Served, engine: ScriptedEngine) -> None:
    served.client().chat.completions.create(model="x", tools=[WEATHER], tool_choice="none",
                                            messages=[
        *HI, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_9", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_9", "content": "sunny"}])
    [request] = engine.requests
    assert request.messages[1:] == (
        ChatMessage("assistant", "", tool_calls=(
            ToolCall("call_9", "get_weather", '{"city": "Rome"}'),)),
        ChatMessage("tool", "sunny", tool_call_id="call_9"))
    assert request.tools == () and request.sampling.grammar is None


def test_output_constraints_become_grammars(served: Served, engine: ScriptedEngine) -> None:
    engine.script(Reply(deltas=('{"name": "Oslo", ', '"population": 700000}')))
    parsed = served.client().chat.completions.parse(model="x", messages=HI,
                                                    response_format=City)
    assert parsed.choices[0].message.parsed == City(name="Oslo", population=700000)
    grammar = json.loads(engine.requests[0].sampling.grammar or "")
    schema = grammar["grammars"][0]["json_schema"]
    assert schema["properties"]["population"]["type"] == "integer"
    assert schema["x-guidance"]["whitespace_flexible"] is False

    engine.script(Reply(deltas=('{"name": "Oslo", ', '"population": 7}')))
    with served.client().chat.completions.stream(model="x", messages=HI,
                                                 response_format=City) as stream:
        assert stream.get_final_completion().choices[0].message.parsed == City(
            name="Oslo", population=7)

    for extra, needle in (({"structured_outputs": {"choice": ["billing", "bug"]}},
                           'start: \\"billing\\" | \\"bug\\"'),
                          ({"guided_regex": "[0-9]+"}, "[0-9]+"),
                          ({"structured_outputs": {"grammar": 'root ::= "yes" | "no"'}},
                           '\\"yes\\"'),
                          ({"response_format": {"type": "json_object"}}, '"type": "object"')):
        engine.requests.clear()
        served.client().chat.completions.create(model="x", messages=HI, extra_body=extra)
        assert needle in (engine.requests[0].sampling.grammar or ""), extra


def lp(token: str, logprob: float, *alternatives: tuple[str, float]) -> TokenLogprob:
    return TokenLogprob(token, 1, logprob, tuple(TopLogprob(t, 2, v) for t, v in alternatives))


def test_logprobs_in_answers_and_chunks(served: Served, engine: ScriptedEngine) -> None:
    deltas = (TextDelta("Hi", (lp("Hi", -0.5, ("Hi", -0.5), ("Hey", -1.5)),)),
              TextDelta("\u00e9", (lp("bytes:\\xc3", -0.1), lp("bytes:\\xa9", float("-inf")))))
    engine.script(Reply(deltas=deltas))
    answer = served.client().chat.completions.create(model="x", messages=HI, logprobs=True,
                                                     top_logprobs=2)
    assert engine.requests[0].sampling.logprobs == 2
    items = answer.choices[0].logprobs.content
    assert [(i.token, i.logprob, i.bytes) for i in items] == [
        ("Hi", -0.5, [72, 105]), ("bytes:\\xc3", -0.1, [0xC3]), ("bytes:\\xa9", -9999.0, [0xA9])]
    assert [(t.token, t.logprob) for t in items[0].top_logprobs] == [("Hi", -0.5), ("Hey", -1.5)]
    engine.script(Reply(deltas=deltas))
    chunks = list(served.client().chat.completions.create(
        model="x", messages=HI, logprobs=True, stream=True))
    streamed = [i.token for c in chunks if c.choices and c.choices[0].logprobs
                for i in c.choices[0].logprobs.content]
    assert streamed == ["Hi", "bytes:\\xc3", "bytes:\\xa9"]
    assert engine.requests[-1].sampling.logprobs == 0


def test_legacy_completions(served: Served, engine: ScriptedEngine) -> None:
    engine.script(*(Reply(deltas=(f" {i}",)) for i in range(4)))
    answer = served.client().completions.create(model="x", prompt=["one", "two"], n=2)
    assert answer.object == "text_completion"
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    assert [r.prompt for r in engine.requests] == ["one", "one", "two", "two"]
    assert all(r.messages == () and r.sampling.max_tokens == 16 for r in engine.requests)
    assert answer.usage.prompt_tokens == 2 * PROMPT_TOKENS

    engine.requests.clear()
    prompt = [None, lp(" cat", -2.0, (" dog", -1.0)), lp(" sat", -3.0)]
    engine.script(Reply(deltas=(), finish_reason="length", prompt_logprobs=tuple(prompt)))
    scored = served.client().completions.create(model="x", prompt="The cat sat", echo=True,
                                                logprobs=1, max_tokens=0)
    [request] = engine.requests
    assert (request.prompt_logprobs, request.sampling.max_tokens) == (1, 0)
    choice = scored.choices[0]
    assert choice.text == "The cat sat"
    assert choice.logprobs.tokens == ["The", " cat", " sat"]
    assert choice.logprobs.token_logprobs == [None, -2.0, -3.0]
    assert choice.logprobs.top_logprobs == [None, {" dog": -1.0}, {}]
    assert choice.logprobs.text_offset == [0, 3, 7]

    engine.script(Reply(deltas=(" a", " b")))
    streamed = "".join(c.choices[0].text for c in served.client().completions.create(
        model="x", prompt="p", stream=True, echo=True) if c.choices)
    assert streamed == "p a b"


def test_responses_api(served: Served, engine: ScriptedEngine) -> None:
    client = served.client()
    response = client.responses.create(model="x", input="hi", instructions="Be brief.",
                                       max_output_tokens=20, temperature=0.5)
    assert response.output_text == "Hello there!" and response.status == "completed"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (PROMPT_TOKENS, 3)
    [request] = engine.requests
    assert request.messages == (ChatMessage("system", "Be brief."), ChatMessage("user", "hi"))
    assert (request.sampling.max_tokens, request.sampling.temperature) == (20, 0.5)

    events = list(client.responses.create(model="x", input="hi", stream=True))
    assert [e.type for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.output_text == "Hello there!"
    assert events[-1].response.usage.total_tokens == PROMPT_TOKENS + 3

    engine.script(Reply(deltas=('{"name": "Oslo", "population": 7}',), finish_reason="stop"))
    parsed = client.responses.parse(model="x", input="hi", text_format=City)
    assert parsed.output_parsed == City(name="Oslo", population=7)
    assert "json_schema" in (engine.requests[-1].sampling.grammar or "")


def test_responses_function_calls(served: Served, engine: ScriptedEngine) -> None:
    client = served.client()
    engine.script(Reply(deltas=ONLY_CALL))
    response = client.responses.create(model="x", input="weather in Oslo?",
                                       tools=[FLAT_WEATHER], tool_choice="required")
    [call] = response.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Oslo"} and call.call_id.startswith("call_")

    engine.script(Reply(deltas=CALL_TEXT))
    events = list(client.responses.create(model="x", input="hi", tools=[FLAT_WEATHER],
                                          stream=True))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments) == {"city": "Paris"}
    final = events[-1].response
    assert [item.type for item in final.output] == ["message", "function_call"]
    assert final.output_text == "Let me look. "

    engine.requests.clear()
    client.responses.create(model="x", tools=[FLAT_WEATHER], input=[
        {"role": "user", "content": "weather in Oslo?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}])
    assert engine.requests[0].messages[1:] == (
        ChatMessage("assistant", "", tool_calls=(
            ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),)),
        ChatMessage("tool", "sunny", tool_call_id="call_1"))

    engine.script(Reply(deltas=("cut",), finish_reason="length"))
    cut = client.responses.create(model="x", input="hi", max_output_tokens=1)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"


def test_inference_route_passes_the_same_fields(served: Served, engine: ScriptedEngine) -> None:
    headers = {"X-Arkor-Client": "arkor/0.1.0",
               "Authorization": f"Bearer {served.ws.credentials.token}"}
    params = {"orgSlug": served.ws.scope.org_slug, "projectSlug": served.ws.scope.project_slug}
    engine.script(Reply(deltas=ONLY_CALL))
    body = {"baseModel": EMBEDDED, "messages": HI, "tools": [WEATHER],
            "toolChoice": "required", "parallelToolCalls": False}
    response = httpx.post(f"{served.url}/v1/inference/chat", params=params, headers=headers,
                          json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] == "tool_calls"
    assert engine.requests[-1].tools[0].name == "get_weather"
    for extra in ({"responseFormat": {"type": "json_object"}},
                  {"structuredOutputs": {"choice": ["a", "b"]}}):
        response = httpx.post(f"{served.url}/v1/inference/chat", params=params,
                              headers=headers, timeout=30,
                              json={"baseModel": EMBEDDED, "messages": HI, **extra})
        assert response.status_code == 200, response.text
        assert engine.requests[-1].sampling.grammar
    for bad in ({"toolChoice": "required"}, {"structuredOutputs": {}},
                {"responseFormat": {"type": "xml"}},
                {"tools": [{"type": "function", "function": {"name": "a b"}}]}):
        response = httpx.post(f"{served.url}/v1/inference/chat", params=params,
                              headers=headers, timeout=30,
                              json={"baseModel": EMBEDDED, "messages": HI, **bad})
        assert response.status_code == 400, (bad, response.text)
        assert isinstance(response.json()["error"], str)
