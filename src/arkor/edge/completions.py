"""``POST /v1/completions``: OpenAI's legacy text completions, on the raw prompt.

Honoured: ``prompt`` (a string or a list of strings; each is tokenized as is, no chat
template), ``max_tokens`` (default 16, as OpenAI's; 0 is allowed), ``n`` (choices per prompt;
choice ``i * n + j`` is prompt ``i``'s ``j``-th), ``echo`` (the prompt is returned before the
completion), ``logprobs`` (an integer 0-20: the chosen token's log-probability and that many
alternatives), ``stream``, ``stream_options.include_usage``, every sampling field of
:mod:`arkor.edge.sampling`, and vLLM's ``structured_outputs`` / ``response_format``.
``echo`` with ``logprobs`` also returns the prompt's own token log-probabilities (the first
token has none): with ``max_tokens: 0`` that is what evaluation harnesses ask for to score a
text. Refused: token-id prompts, ``suffix``, ``best_of`` other than ``n``, and ``echo`` with
``logprobs`` while streaming.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response
from starlette.types import Receive

from arkor.edge import logprobs as shapes
from arkor.edge import openai_wire as wire
from arkor.edge import runs, sse, structured
from arkor.edge import sampling as sampling_fields
from arkor.edge.errors import bad
from arkor.edge.fields import boolean, integer
from arkor.edge.serving import (
    EngineProvider,
    Rows,
    bounded,
    engine_error,
    fan_out,
)
from arkor.edge.structured import Constraint
from arkor.engine.base import (
    AdapterRef,
    EngineError,
    Finished,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    TokenLogprob,
)

DEFAULT_MAX_TOKENS = 16
MAX_LOGPROBS = 20
MAX_PROMPTS = 64


@dataclass(frozen=True)
class CompletionRequest:
    prompts: tuple[str, ...]
    sampling: SamplingParams
    n: int = 1
    echo: bool = False
    logprobs: int | None = None
    stream: bool = False
    include_usage: bool = False
    constraint: Constraint | None = None


def _prompts(body: dict[str, Any]) -> tuple[str, ...]:
    prompt = body.get("prompt")
    if prompt is None:
        raise bad("prompt is required", "prompt", "missing_required_parameter")
    if isinstance(prompt, str):
        return (prompt,)
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        if len(prompt) > MAX_PROMPTS:
            raise bad(f"prompt takes at most {MAX_PROMPTS} strings per request", "prompt")
        return tuple(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(p, int | list) for p in prompt):
        raise bad("prompt as token ids is not supported; send the text", "prompt",
                  "unsupported_value")
    raise bad("prompt must be a string or a non-empty array of strings", "prompt",
              "invalid_type")


def parse_completion_request(body: dict[str, Any], *, max_n: int) -> CompletionRequest:
    prompts = _prompts(body)
    if body.get("suffix") not in (None, ""):
        raise bad("suffix (insertion) is not supported", "suffix", "unsupported_parameter")
    n = integer(body, "n", 1, max_n) or 1
    best_of = integer(body, "best_of", 1)
    if best_of is not None and best_of != n:
        raise bad("best_of other than n is not supported", "best_of", "unsupported_value")
    logprobs = integer(body, "logprobs", 0, MAX_LOGPROBS)
    echo = boolean(body, "echo", False)
    stream, include_usage = wire.stream_flags(body)
    if stream and echo and logprobs is not None:
        raise bad("echo with logprobs is not supported while streaming; send stream: false",
                  "echo", "unsupported_value")
    constraint = structured.chat_constraint(body)
    sampling = sampling_fields.parse_sampling(body, max_tokens_names=("max_tokens",),
                                              min_max_tokens=0)
    return CompletionRequest(
        prompts=prompts, n=n, echo=echo, logprobs=logprobs, stream=stream,
        include_usage=include_usage, constraint=constraint,
        sampling=sampling_fields.with_output(sampling, logprobs=logprobs,
                                             constraint=constraint))


@dataclass
class TextChoice:
    """One choice of one prompt, as it is generated."""

    index: int
    prompt: str
    parts: list[str] = field(default_factory=list)
    tokens: list[TokenLogprob] = field(default_factory=list)
    finished: Finished | None = None

    def echo_logprobs(self) -> dict[str, Any]:
        """The prompt's tokens, then the completion's, as one legacy logprobs block."""
        assert self.finished is not None
        prompt_tokens = list(self.finished.prompt_logprobs or ())
        if prompt_tokens and prompt_tokens[0] is None:
            rest = "".join(t.token for t in prompt_tokens[1:] if t is not None)
            first = self.prompt[:len(self.prompt) - len(rest)] \
                if self.prompt.endswith(rest) else ""
            block = shapes.completion_block(prompt_tokens[1:], offset=len(first))
            head = {"tokens": [first], "token_logprobs": [None], "top_logprobs": [None],
                    "text_offset": [0]}
            prompt_block = shapes.merge_completion_blocks(head, block)
        else:
            prompt_block = shapes.completion_block(prompt_tokens)
        return shapes.merge_completion_blocks(
            prompt_block, shapes.completion_block(self.tokens, offset=len(self.prompt)))

    def body(self, request: CompletionRequest) -> dict[str, Any]:
        assert self.finished is not None
        text = "".join(self.parts)
        logprobs = None
        if request.logprobs is not None:
            logprobs = self.echo_logprobs() if request.echo else shapes.completion_block(
                self.tokens)
        return {"index": self.index, "text": self.prompt + text if request.echo else text,
                "logprobs": logprobs, "finish_reason": self.finished.finish_reason}


def requests_for(request: CompletionRequest, *, base_model: str, adapter: AdapterRef | None,
                 engines: EngineProvider) -> list[GenerationRequest]:
    sampling = bounded(request.sampling, engines.limits, default=DEFAULT_MAX_TOKENS)
    wanted = request.logprobs if request.echo else None
    rows: list[GenerationRequest] = []
    for prompt in request.prompts:
        rows += fan_out(GenerationRequest(base_model=base_model, messages=(),
                                          sampling=sampling, adapter=adapter, prompt=prompt,
                                          prompt_logprobs=wanted), request.n)
    return rows


def _usage(choices: list[TextChoice], n: int) -> dict[str, int]:
    done = [c.finished for c in choices if c.finished is not None]
    prompt_tokens = sum(f.prompt_tokens for f in done[::n])
    return wire.usage(prompt_tokens, sum(f.completion_tokens for f in done))


def _envelope(cid: str, model: str, created: int, choices: list[dict[str, Any]]
              ) -> dict[str, Any]:
    return {"id": cid, "object": "text_completion", "created": created, "model": model,
            "choices": choices, "system_fingerprint": None}


async def _start(engines: EngineProvider, request: CompletionRequest,
                 rows: list[GenerationRequest]) -> Rows:
    engine = await engines.get()
    return await Rows.start(engine, rows, prompt_param="prompt", grammar_param=(
        request.constraint.param if request.constraint else None))


def _choices(request: CompletionRequest) -> list[TextChoice]:
    return [TextChoice(i * request.n + j, prompt) for i, prompt in enumerate(request.prompts)
            for j in range(request.n)]


async def _complete(engines: EngineProvider, request: CompletionRequest,
                    rows: list[GenerationRequest], model: str) -> dict[str, Any]:
    running = await _start(engines, request, rows)
    choices = _choices(request)
    try:
        async for row, event in running:
            if isinstance(event, TextDelta):
                choices[row].parts.append(event.text)
                choices[row].tokens.extend(event.logprobs)
            elif isinstance(event, Finished):
                choices[row].finished = event
    except EngineError as exc:
        raise engine_error(exc, prompt_param="prompt") from exc
    finally:
        await running.aclose()
    body = _envelope(wire.completion_id("cmpl"), model, wire.now(),
                     [c.body(request) for c in choices])
    body = {**body, "usage": _usage(choices, request.n)}
    runs.answered(body)
    return body


async def _frames(running: Rows, request: CompletionRequest, model: str
                  ) -> AsyncIterator[bytes]:
    cid, created = wire.completion_id("cmpl"), wire.now()
    choices = _choices(request)

    def frame(index: int, text: str, *, logprobs: dict[str, Any] | None = None,
              finish_reason: str | None = None) -> bytes:
        return sse.data(_envelope(cid, model, created, [
            {"index": index, "text": text, "logprobs": logprobs,
             "finish_reason": finish_reason}]))

    if request.echo:
        for choice in choices:
            yield frame(choice.index, choice.prompt)
    try:
        async for row, event in running:
            choice = choices[row]
            if isinstance(event, TextDelta) and (event.text or event.logprobs):
                choice.tokens.extend(event.logprobs)
                lp = (shapes.completion_block(event.logprobs)
                      if request.logprobs is not None else None)
                yield frame(choice.index, event.text, logprobs=lp)
            elif isinstance(event, Finished):
                choice.finished = event
                yield frame(choice.index, "", finish_reason=event.finish_reason)
        if request.include_usage:
            yield sse.data({**_envelope(cid, model, created, []),
                       "usage": _usage(choices, request.n)})
        if runs.current.get() is not None:  # the assembled answer, for the stored run
            runs.answered({**_envelope(cid, model, created, [c.body(request) for c in choices]),
                           "usage": _usage(choices, request.n)})
        yield sse.DONE
    except EngineError as exc:
        yield sse.error_frame(exc)
    finally:
        await running.aclose()


async def serve(receive: Receive, engines: EngineProvider, body: dict[str, Any], *,
                 base_model: str, adapter: AdapterRef | None, model: str) -> Response:
    request = parse_completion_request(body, max_n=engines.limits.max_n)
    await structured.validate(request.constraint)
    rows = requests_for(request, base_model=base_model, adapter=adapter, engines=engines)
    if not request.stream:
        return await sse.json_answer(receive, _complete(engines, request, rows, model))
    return sse.stream(_frames(await _start(engines, request, rows), request, model))
