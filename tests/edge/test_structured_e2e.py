"""Structured output, tool calling and the rest of the OpenAI surface with the real model,
through the official ``openai`` client (and the JavaScript package once), on a deployment of
the base model and one of a trained adapter.

The model is tiny, so what it says is nonsense; what is checked is what constrained decoding
guarantees (the JSON parses and validates, labels come from the list, calls name a tool and
their arguments satisfy its schema) and what the wire promises (shapes, n, logprobs equal to
the model's own log-softmax). Schemas bound their strings and numbers so every answer fits in
a small ``max_tokens``; requests run concurrently, as rows of one batch.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Literal, TypeVar

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from tests.edge.conftest import EMBEDDED, EdgeWorld
from tests.edge.test_edge_wire import node_openai  # noqa: F401  (a session fixture)

T = TypeVar("T")
TICKET = "I was charged twice for my subscription this month."
LABELS = ["billing", "bug", "other"]
WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 16},
                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": WEATHER_PARAMETERS, "strict": True}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Local time in a time zone.",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 8}},
                   "required": ["zone"], "additionalProperties": False}}}
TRIAGE = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": LABELS},
        "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
        "summary": {"type": "string", "maxLength": 16},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8},
                 "maxItems": 1},
        "refund": {"type": "boolean"},
    },
    "required": ["category", "urgency", "summary", "tags", "refund"],
    "additionalProperties": False,
}
PROMPTS = [
    TICKET, "The export button gives me an empty file.", "Do you have an office in Berlin?",
    "My invoice shows the wrong VAT number.", "The app crashes when I rotate my phone.",
    "Can I change the email on my account?", "You billed my card after I cancelled.",
    "Search returns nothing for names with accents.", "What are your opening hours?",
    "I need a copy of last year's receipts.", "Dark mode makes the buttons invisible.",
    "Is there a discount for students?", "The payment page times out every time.",
    "Notifications arrive twice on Android.", "Who do I talk to about a partnership?",
    "My refund has not arrived after two weeks.", "Uploading a PNG shows a blank preview.",
    "Do you ship to Canada?", "I was charged in dollars instead of euros.",
    "The login link in the email has expired.",
]


class City(BaseModel):
    name: str = Field(max_length=12)
    population: int = Field(ge=0, le=9_999_999)
    capital: bool
    continent: Literal["Africa", "Americas", "Asia", "Europe", "Oceania"]


def deploy(world: EdgeWorld, slug: str, target: dict[str, Any]) -> openai.OpenAI:
    deployment = world.ws.client.create_deployment(world.ws.scope, slug=slug, target=target,
                                                   auth_mode="none")
    return openai.OpenAI(base_url=deployment.base_url, api_key="unused", max_retries=0,
                         timeout=300)


@pytest.fixture(scope="module")
def base(edge_world: EdgeWorld) -> openai.OpenAI:
    return deploy(edge_world, "structured-base", {"kind": "base_model", "baseModel": EMBEDDED})


@pytest.fixture(scope="module")
def adapter(edge_world: EdgeWorld) -> openai.OpenAI:
    return deploy(edge_world, "structured-labels", {"kind": "adapter", "adapter": {
        "kind": "final", "jobId": edge_world.label_job}})


_OPEN: list[openai.AsyncOpenAI] = []


def async_twin(client: openai.OpenAI) -> openai.AsyncOpenAI:
    """An async client for the same deployment, closed at the end of :func:`run`."""
    twin = openai.AsyncOpenAI(base_url=str(client.base_url), api_key="unused", max_retries=0,
                              timeout=300)
    _OPEN.append(twin)
    return twin


def ask(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def check_call(call: Any) -> dict[str, Any]:
    """A call names an offered tool and its arguments satisfy that tool's schema."""
    schemas = {"get_weather": WEATHER_PARAMETERS, "get_time": TIME["function"]["parameters"]}
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, schemas[call.function.name])
    assert call.id.startswith("call_") and call.type == "function"
    return arguments


def run(*flows: Awaitable[T]) -> list[T]:
    """Run the flows concurrently (their requests share the engine's batches)."""
    async def gather() -> list[T]:
        try:
            return list(await asyncio.gather(*flows))
        finally:
            while _OPEN:
                await _OPEN.pop().close()

    return asyncio.run(gather())


def test_parse_with_a_pydantic_model(base: openai.OpenAI, adapter: openai.OpenAI) -> None:
    async def parse(client: openai.OpenAI, city: str) -> Any:
        return await async_twin(client).chat.completions.parse(
            model="x", messages=ask(f"Describe {city} as JSON."), response_format=City,
            max_tokens=60, temperature=0)

    async def streamed(city: str) -> Any:
        async with async_twin(base).chat.completions.stream(
                model="x", messages=ask(f"Describe {city} as JSON."), response_format=City,
                max_tokens=60, temperature=0) as stream:
            return await stream.get_final_completion()

    for answer in run(parse(base, "Paris"), parse(adapter, "Paris"), streamed("Tokyo")):
        assert isinstance(answer.choices[0].message.parsed, City)
        assert answer.choices[0].finish_reason == "stop"


def test_strict_json_schema_validates_across_twenty_prompts(base: openai.OpenAI,
                                                            adapter: openai.OpenAI) -> None:
    response_format = {"type": "json_schema",
                       "json_schema": {"name": "triage", "strict": True, "schema": TRIAGE}}

    async def one(client: openai.AsyncOpenAI, prompt: str, seed: int) -> tuple[str, str]:
        answer = await client.chat.completions.create(
            model="x", messages=ask(f"Triage this ticket as JSON: {prompt}"),
            response_format=response_format, max_tokens=120, temperature=0.7, seed=seed)
        return answer.choices[0].message.content or "", answer.choices[0].finish_reason

    clients = (async_twin(base), async_twin(adapter))
    answers = run(*(one(clients[i % 2], prompt, i) for i, prompt in enumerate(PROMPTS)))
    assert len(answers) == 20
    for text, finish_reason in answers:
        assert finish_reason == "stop", text
        jsonschema.validate(json.loads(text), TRIAGE)


def test_choice_returns_only_listed_labels(adapter: openai.OpenAI) -> None:
    client = async_twin(adapter)
    answers = run(*(client.chat.completions.create(
        model="x", messages=ask(prompt), max_tokens=8, temperature=1.0, seed=1,
        extra_body={"structured_outputs": {"choice": LABELS}}) for prompt in PROMPTS[:4]))
    assert all(a.choices[0].message.content in LABELS for a in answers)


async def round_two(client: openai.AsyncOpenAI, messages: list[dict[str, Any]], call: Any
                    ) -> str:
    """Send the tool's result back; the final answer is text."""
    messages = [*messages,
                {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 21}'}]
    final = await client.chat.completions.create(
        model="x", messages=messages, tools=[WEATHER, TIME], max_tokens=8, temperature=0)
    assert final.choices[0].finish_reason in ("stop", "length", "tool_calls")
    return final.choices[0].message.content or ""


NAMED = {"type": "function", "function": {"name": "get_time"}}


async def forced_call(client: openai.AsyncOpenAI, tool_choice: Any, *, stream: bool) -> None:
    """A call forced by ``tool_choice`` (one, no parallel calls), then the round trip."""
    messages = ask("What time is it in Tokyo?" if tool_choice == NAMED
                   else "What is the weather in Oslo?")
    options: dict[str, Any] = {"model": "x", "messages": messages, "tools": [WEATHER, TIME],
                               "tool_choice": tool_choice, "parallel_tool_calls": False,
                               "max_tokens": 40, "temperature": 0}
    if stream:
        async with client.chat.completions.stream(**options) as streaming:
            answer = await streaming.get_final_completion()
    else:
        answer = await client.chat.completions.create(**options)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content, choice
    [call] = choice.message.tool_calls or []
    check_call(call)
    if tool_choice == NAMED:
        assert call.function.name == "get_time"
    await round_two(client, messages, call)


async def auto_stream(client: openai.AsyncOpenAI) -> None:
    """``auto``: text, or a call constrained once it starts."""
    chunks = [chunk async for chunk in await client.chat.completions.create(
        model="x", messages=[{"role": "system", "content": "Call a tool when one helps."},
                             *ask("Weather in Lima, please.")],
        tools=[WEATHER, TIME], tool_choice="auto", max_tokens=30, temperature=0, stream=True)]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    fragments = [d.tool_calls[0] for d in deltas if d.tool_calls]
    finish = chunks[-1].choices[0].finish_reason
    if not fragments:  # the model chose to answer in text
        assert "".join(d.content or "" for d in deltas) and finish in ("stop", "length")
        return
    assert fragments[0].id and fragments[0].function.name in ("get_weather", "get_time")
    if finish == "tool_calls":
        arguments = "".join(f.function.arguments or "" for f in fragments if f.index == 0)
        schema = {"get_weather": WEATHER_PARAMETERS,
                  "get_time": TIME["function"]["parameters"]}[fragments[0].function.name]
        jsonschema.validate(json.loads(arguments), schema)


def test_tool_round_trips_required_named_and_auto(base: openai.OpenAI) -> None:
    client = async_twin(base)
    run(forced_call(client, "required", stream=False), forced_call(client, NAMED, stream=False),
        forced_call(client, "required", stream=True), forced_call(client, NAMED, stream=True),
        auto_stream(client))


def test_n_choices(base: openai.OpenAI) -> None:
    answer = base.chat.completions.create(model="x", messages=ask(TICKET), n=3, max_tokens=8,
                                          temperature=1.0, seed=7)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert len({c.message.content for c in answer.choices}) >= 2
    assert 3 <= answer.usage.completion_tokens <= 3 * 8


def test_logprobs_and_logit_bias(base: openai.OpenAI, embedded_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    answer = base.chat.completions.create(model="x", messages=ask(TICKET), max_tokens=6,
                                          temperature=0, logprobs=True, top_logprobs=3)
    items = answer.choices[0].logprobs.content
    assert len(items) == answer.usage.completion_tokens
    assert "".join(i.token for i in items) == answer.choices[0].message.content
    for item in items:
        assert len(item.top_logprobs) == 3 and item.logprob <= 0
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob, abs=1e-4)
        assert bytes(item.bytes).decode() == item.token

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    first = items[0].token
    [banned] = tokenizer.encode(first, add_special_tokens=False)
    again = base.chat.completions.create(model="x", messages=ask(TICKET), max_tokens=6,
                                         temperature=0, logprobs=True,
                                         logit_bias={str(banned): -100})
    assert all(i.token != first for i in again.choices[0].logprobs.content)
    with pytest.raises(openai.BadRequestError) as raised:
        base.chat.completions.create(model="x", messages=ask(TICKET), max_tokens=2,
                                     logit_bias={str(len(tokenizer) + 10**6): 5})
    assert raised.value.param == "logit_bias"


def test_completions_echo_logprobs_are_the_models_log_softmax(
        base: openai.OpenAI, embedded_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = "The cat sat on the mat because it was warm."
    scored = base.completions.create(model="x", prompt=text, echo=True, logprobs=0,
                                     max_tokens=0)
    choice = scored.choices[0]
    assert choice.text == text and scored.usage.completion_tokens == 0
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    ids = tokenizer(text)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    expected = torch.log_softmax(logits, dim=-1)[torch.arange(len(ids) - 1), ids[1:]].tolist()
    assert choice.logprobs.token_logprobs[0] is None
    assert choice.logprobs.token_logprobs[1:] == pytest.approx(expected, abs=2e-3)
    assert "".join(choice.logprobs.tokens) == text

    more = base.completions.create(model="x", prompt=["Once upon a", "The capital of"],
                                   max_tokens=4, temperature=0, n=2, logprobs=2)
    assert [c.index for c in more.choices] == [0, 1, 2, 3]
    assert more.choices[0].text == more.choices[1].text  # greedy: both choices agree
    assert all(len(c.logprobs.tokens) == len(c.logprobs.top_logprobs) for c in more.choices)
    streamed = "".join(c.choices[0].text for c in base.completions.create(
        model="x", prompt="Once upon a", max_tokens=4, temperature=0, stream=True)
        if c.choices)
    assert streamed == more.choices[0].text


def test_responses_api(base: openai.OpenAI, adapter: openai.OpenAI) -> None:
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER_PARAMETERS,
              "strict": True}]
    client, labels = async_twin(base), async_twin(adapter)

    async def events() -> list[Any]:
        return [event async for event in await labels.responses.create(
            model="x", input=TICKET, max_output_tokens=8, temperature=0, stream=True)]

    async def streamed_parse() -> Any:
        async with client.responses.stream(model="x", input="Describe Rome as JSON.",
                                           text_format=City, max_output_tokens=60,
                                           temperature=0) as stream:
            return await stream.get_final_response()

    async def function_round_trip() -> None:
        called = await client.responses.create(model="x", input="Weather in Oslo?",
                                               tools=tools, tool_choice="required",
                                               max_output_tokens=40, temperature=0)
        call = next(item for item in called.output if item.type == "function_call")
        jsonschema.validate(json.loads(call.arguments), WEATHER_PARAMETERS)
        final = await client.responses.create(model="x", tools=tools, max_output_tokens=8,
                                              temperature=0, input=[
            {"role": "user", "content": "Weather in Oslo?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name,
             "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
        assert final.status in ("completed", "incomplete")

    plain, streamed, parsed, parsed_stream, _ = run(
        labels.responses.create(model="x", input=TICKET, max_output_tokens=8, temperature=0),
        events(),
        client.responses.parse(model="x", input="Describe Lima as JSON.", text_format=City,
                               max_output_tokens=60, temperature=0),
        streamed_parse(), function_round_trip())
    assert plain.output_text and plain.status in ("completed", "incomplete")
    assert streamed[0].type == "response.created"
    assert streamed[-1].type in ("response.completed", "response.incomplete")
    assert streamed[-1].response.output_text == plain.output_text
    assert streamed[-1].response.usage.output_tokens == plain.usage.output_tokens
    assert isinstance(parsed.output_parsed, City)
    assert isinstance(parsed_stream.output_parsed, City)


JS_STRUCTURED = """\
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "unused" });
const schema = JSON.parse(process.env.SCHEMA);
const response = await client.chat.completions.create({
  model: "ignored",
  messages: [{ role: "user", content: "Triage: the app crashes on start." }],
  response_format: { type: "json_schema", json_schema: { name: "triage", strict: true, schema } },
  max_tokens: 120,
  temperature: 0,
});
console.log(JSON.stringify(JSON.parse(response.choices[0].message.content)));
"""


def test_javascript_openai_package_structured_output(node_openai: Path,  # noqa: F811
                                                     adapter: openai.OpenAI) -> None:
    script = node_openai / "structured.mjs"
    script.write_text(JS_STRUCTURED)
    result = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/usr/local/bin",
                                 "BASE_URL": str(adapter.base_url).rstrip("/"),
                                 "SCHEMA": json.dumps(TRIAGE)})
    assert result.returncode == 0, result.stderr
    jsonschema.validate(json.loads(result.stdout), TRIAGE)
