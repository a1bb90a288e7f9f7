"""The edge's wire and error mapping over real HTTP, with a scripted engine in place of the
model: what the engine is given, and how each of its answers and failures reaches an OpenAI
client (429 with ``Retry-After``, 400, 503, an ``error`` frame that ends a stream)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from arkor.cloud.settings import Settings
from arkor.engine.base import (
    AdapterLoadError,
    ChatMessage,
    EngineError,
    EngineUnavailable,
    InvalidRequest,
    PromptTooLong,
    TextDelta,
    TokenLogprob,
    TopLogprob,
)
from arkor.server import create_app
from tests.doubles.engine import (
    PROMPT_TOKENS,
    Reply,
    ScriptedEngine,
    ends_early,
    fails_after,
    overloaded,
    refused,
)
from tests.edge.conftest import EMBEDDED
from tests.servers import LiveServer
from tests.workspace import new_workspace

DEFAULT_MAX_TOKENS = 11
HI = [{"role": "user", "content": "hi"}]


@dataclass
class Served:
    engine: ScriptedEngine
    base_url: str
    url: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def client(self) -> openai.OpenAI:
        """No retries: each request takes exactly one reply from the script."""
        return openai.OpenAI(base_url=self.base_url, api_key=self.key, max_retries=0)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    engine = ScriptedEngine()
    settings = Settings(data_dir=tmp_path_factory.mktemp("double"),
                        default_max_tokens=DEFAULT_MAX_TOKENS)
    with LiveServer(create_app(settings, engine=engine)) as url:
        ws = new_workspace(url)
        deployment = ws.client.create_deployment(
            ws.scope, slug="double-bot", target={"kind": "base_model", "baseModel": EMBEDDED})
        key = ws.client.create_deployment_key(deployment.id, ws.scope, label="wire")
        yield Served(engine, deployment.base_url, deployment.url, key.plaintext)


@pytest.fixture
def engine(served: Served) -> Iterator[ScriptedEngine]:
    served.engine.script()
    served.engine.requests.clear()
    yield served.engine
    assert served.engine.open_generations == 0, "the edge left an engine generation open"


def openai_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def frames(response: httpx.Response) -> list[str]:
    """The ``data:`` payloads of an SSE answer, in order."""
    assert response.headers["content-type"].startswith("text/event-stream")
    return [event.removeprefix("data: ") for event in response.text.split("\n\n") if event]


def test_the_engine_gets_the_parsed_request(served: Served, engine: ScriptedEngine) -> None:
    answer = served.client().chat.completions.create(
        model="ignored", messages=[{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Hello?"}],
        temperature=0.25, top_p=0.5, max_tokens=17, seed=-3, stop=["END", "\n\n"])
    assert answer.choices[0].message.content == "Hello there!"
    assert answer.choices[0].finish_reason == "stop" and answer.model == "double-bot"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (PROMPT_TOKENS, 3)
    [request] = engine.requests
    assert request.base_model == EMBEDDED and request.adapter is None
    assert request.messages == (ChatMessage("system", "Be brief."), ChatMessage("user", "Hello?"))
    sampling = request.sampling
    assert (sampling.temperature, sampling.top_p, sampling.max_tokens, sampling.seed,
            sampling.stop) == (0.25, 0.5, 17, -3, ("END", "\n\n"))


def test_max_tokens_defaults_to_the_operator_setting(served: Served,
                                                     engine: ScriptedEngine) -> None:
    served.client().chat.completions.create(model="ignored", messages=HI)
    assert engine.requests[0].sampling.max_tokens == DEFAULT_MAX_TOKENS


def test_a_stream_carries_the_deltas_and_the_usage(served: Served,
                                                   engine: ScriptedEngine) -> None:
    chunks = list(served.client().chat.completions.create(
        model="ignored", messages=HI, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 3 and engine.requests[0].messages


def test_the_engine_logprobs_reach_the_client(served: Served, engine: ScriptedEngine) -> None:
    def token(text: str, logprob: float, alternative: str) -> TokenLogprob:
        return TokenLogprob(text, 1, logprob, top=(TopLogprob(text, 1, logprob),
                                                    TopLogprob(alternative, 2, logprob - 1)))

    engine.script(Reply(deltas=(TextDelta("Hi", (token("Hi", -0.25, "Yo"),)),
                                TextDelta("!", (token("!", -0.5, "."),)))))
    answer = served.client().chat.completions.create(model="ignored", messages=HI,
                                                     logprobs=True, top_logprobs=2)
    assert engine.requests[0].sampling.logprobs == 2
    content = answer.choices[0].logprobs.content
    assert [(t.token, t.logprob) for t in content] == [("Hi", -0.25), ("!", -0.5)]
    assert [[top.token for top in t.top_logprobs] for t in content] == [["Hi", "Yo"], ["!", "."]]


@pytest.mark.parametrize("stream", [False, True])
def test_overload_is_429_with_retry_after(served: Served, engine: ScriptedEngine,
                                          stream: bool) -> None:
    engine.script(overloaded(2.2))
    with pytest.raises(openai.RateLimitError) as raised:
        served.client().chat.completions.create(model="ignored", messages=HI, stream=stream)
    assert raised.value.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "3"
    assert (raised.value.type, raised.value.code) == ("rate_limit_error", "engine_overloaded")
    engine.script(overloaded(0.01))
    response = httpx.post(served.url, headers=served.headers, timeout=30,
                          json={"messages": HI, "stream": stream})
    error = openai_error(response, 429)
    assert response.headers["Retry-After"] == "1"
    assert (error["type"], error["code"]) == ("rate_limit_error", "engine_overloaded")


@pytest.mark.parametrize("stream", [False, True])
def test_a_prompt_too_long_is_400_on_messages(served: Served, engine: ScriptedEngine,
                                              stream: bool) -> None:
    engine.script(refused(PromptTooLong(9000, 8192)))
    with pytest.raises(openai.BadRequestError) as raised:
        served.client().chat.completions.create(model="ignored", messages=HI, stream=stream)
    assert (raised.value.param, raised.value.code) == ("messages", "context_length_exceeded")
    assert "8192" in raised.value.message


def test_an_invalid_request_from_the_engine_is_a_400_naming_its_field(
        served: Served, engine: ScriptedEngine) -> None:
    engine.script(refused(InvalidRequest("logit_bias names token id 99999", "logit_bias")))
    with pytest.raises(openai.BadRequestError) as raised:
        served.client().chat.completions.create(model="ignored", messages=HI,
                                                logit_bias={"99999": 1})
    assert (raised.value.param, raised.value.code) == ("logit_bias", "invalid_value")


@pytest.mark.parametrize(("error", "code"), [
    (EngineUnavailable("the engine was closed"), "engine_unavailable"),
    (AdapterLoadError("job:1:final", "no adapter_config.json"), "model_unavailable"),
    (EngineError("something else"), "engine_error"),
])
def test_engine_failures_before_the_first_token_are_503(
        served: Served, engine: ScriptedEngine, error: EngineError, code: str) -> None:
    engine.script(refused(error))
    response = httpx.post(served.url, headers=served.headers, json={"messages": HI}, timeout=30)
    body = openai_error(response, 503)
    assert (body["type"], body["code"]) == ("server_error", code)


def test_an_error_mid_stream_ends_it_with_an_error_frame(served: Served,
                                                         engine: ScriptedEngine) -> None:
    engine.script(fails_after(("Hel", "lo"), EngineUnavailable("the GPU fell off")))
    response = httpx.post(served.url, headers=served.headers, timeout=30,
                          json={"messages": HI, "stream": True})
    assert response.status_code == 200
    *chunks, last = frames(response)
    assert "".join(json.loads(c)["choices"][0]["delta"].get("content", "")
                   for c in chunks) == "Hello"
    error = json.loads(last)["error"]
    assert (error["type"], error["code"]) == ("server_error", "engine_unavailable")
    assert "the GPU fell off" in error["message"] and "[DONE]" not in response.text

    engine.script(fails_after(("Hel", "lo"), EngineUnavailable("the GPU fell off")))
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in served.client().chat.completions.create(model="ignored", messages=HI,
                                                              stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Hello" and raised.value.code == "engine_unavailable"


def test_an_error_mid_answer_without_streaming_is_503(served: Served,
                                                      engine: ScriptedEngine) -> None:
    engine.script(fails_after(("Hel", "lo"), EngineUnavailable("the GPU fell off")))
    response = httpx.post(served.url, headers=served.headers, json={"messages": HI}, timeout=30)
    assert openai_error(response, 503)["code"] == "engine_unavailable"


def test_an_early_end_ends_the_stream_with_an_error_frame(served: Served,
                                                          engine: ScriptedEngine) -> None:
    engine.script(ends_early(("Hel",)))
    response = httpx.post(served.url, headers=served.headers, timeout=30,
                          json={"messages": HI, "stream": True})
    assert response.status_code == 200
    *_chunks, last = frames(response)
    error = json.loads(last)["error"]
    assert (error["type"], error["code"]) == ("server_error", "engine_error")
    assert "ended the request early" in error["message"] and "[DONE]" not in response.text


def test_an_early_end_before_any_token_is_503(served: Served, engine: ScriptedEngine) -> None:
    engine.script(ends_early(()))
    for stream in (False, True):
        engine.script(ends_early(()))
        response = httpx.post(served.url, headers=served.headers, timeout=30,
                              json={"messages": HI, "stream": stream})
        assert openai_error(response, 503)["code"] == "engine_error"


def test_an_early_end_after_tokens_without_streaming_is_503(
        served: Served, engine: ScriptedEngine) -> None:
    """An engine that stops without its ``Finished`` fails the request as an engine error,
    as the stream does (it was a 500 with a logged traceback before)."""
    engine.script(ends_early(("Hel",)))
    response = httpx.post(served.url, headers=served.headers, json={"messages": HI}, timeout=30)
    error = openai_error(response, 503)
    assert (error["type"], error["code"]) == ("server_error", "engine_error")
    assert "ended the request early" in error["message"]
