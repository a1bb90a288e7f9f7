"""``POST /v1/chat/completions``: a parsed chat request answered by the engine.

:func:`answer` validates the request's grammar (off the event loop), runs its ``n`` choices
as rows of the engine's batch, and answers a ``chat.completion`` or its SSE chunks. With tools
offered, each choice's text goes through a :class:`ToolCallParser`: calls become
``message.tool_calls`` (``finish_reason: "tool_calls"``, ``content`` null when there is no
other text) or, streaming, OpenAI's tool-call deltas; text that might open a call is held
back until it is known. Used by the edge and, through :mod:`arkor.server`, by the control
plane's ``/v1/inference/chat``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response
from starlette.types import Receive

from arkor.edge import logprobs as logprob_shapes
from arkor.edge import openai_wire as wire
from arkor.edge import runs, sse, structured
from arkor.edge.openai_wire import ChatRequest
from arkor.edge.serving import (
    EngineProvider,
    Rows,
    bounded,
    engine_error,
    fan_out,
)
from arkor.edge.tool_calls import CallArguments, CallStarted, Content, ToolCallEvent, ToolCallParser
from arkor.engine.base import (
    AdapterRef,
    EngineError,
    Finished,
    GenerationRequest,
    TextDelta,
    TokenLogprob,
)


def tool_call_delta(event: CallStarted | CallArguments) -> dict[str, Any]:
    if isinstance(event, CallStarted):
        return {"index": event.index, "id": event.id, "type": "function",
                "function": {"name": event.name, "arguments": ""}}
    return {"index": event.index, "function": {"arguments": event.fragment}}


@dataclass
class ChatChoice:
    """One choice as it is generated: its text, tool calls and log-probabilities."""

    index: int
    parser: ToolCallParser | None
    want_logprobs: bool
    parts: list[str] = field(default_factory=list)
    tokens: list[TokenLogprob] = field(default_factory=list)
    unsent: list[TokenLogprob] = field(default_factory=list)
    finished: Finished | None = None

    def _deltas(self, events: list[ToolCallEvent]) -> list[dict[str, Any]]:
        deltas: list[dict[str, Any]] = []
        for event in events:
            if isinstance(event, Content):
                if not event.text:
                    continue
                self.parts.append(event.text)
                if deltas and "content" in deltas[-1]:
                    deltas[-1]["content"] += event.text
                else:
                    deltas.append({"content": event.text})
            else:
                deltas.append({"tool_calls": [tool_call_delta(event)]})
        return deltas

    def _chunks(self, deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
        chunks = []
        for delta in deltas:
            lp = logprob_shapes.chat_items(self.unsent) if self.want_logprobs else None
            self.unsent = []
            chunks.append(wire.chunk_choice(index=self.index, delta=delta, logprobs=lp))
        return chunks

    def add(self, delta: TextDelta) -> list[dict[str, Any]]:
        """Take new text; answer the chunk choices it lets us send now."""
        self.tokens.extend(delta.logprobs)
        self.unsent.extend(delta.logprobs)
        events: list[ToolCallEvent] = (self.parser.feed(delta.text) if self.parser is not None
                                       else [Content(delta.text)])
        return self._chunks(self._deltas(events))

    def finish(self, finished: Finished) -> list[dict[str, Any]]:
        """The end: what the parser still held, then the chunk with ``finish_reason``."""
        self.finished = finished
        chunks = self._chunks(self._deltas(self.parser.finish() if self.parser else []))
        lp = logprob_shapes.chat_items(self.unsent) if self.want_logprobs and self.unsent \
            else None
        self.unsent = []
        return [*chunks, wire.chunk_choice(index=self.index, delta={},
                                           finish_reason=self.finish_reason, logprobs=lp)]

    @property
    def finish_reason(self) -> str:
        assert self.finished is not None
        if self.parser is not None and self.parser.calls and \
                self.finished.finish_reason == "stop":
            return "tool_calls"
        return self.finished.finish_reason

    def message(self) -> dict[str, Any]:
        text = "".join(self.parts)
        calls = self.parser.calls if self.parser else []
        return wire.choice(
            index=self.index, content=None if calls and not text.strip() else text,
            finish_reason=self.finish_reason,
            tool_calls=[{"id": c.id, "type": "function",
                         "function": {"name": c.name, "arguments": c.arguments}}
                        for c in calls],
            logprobs=logprob_shapes.chat_items(self.tokens) if self.want_logprobs else None)


def requests_for(chat: ChatRequest, *, base_model: str, adapter: AdapterRef | None,
                 engines: EngineProvider, max_tokens_param: str = "max_tokens"
                 ) -> list[GenerationRequest]:
    sampling = bounded(chat.sampling, engines.limits, param=max_tokens_param)
    request = GenerationRequest(base_model=base_model, messages=chat.messages,
                                sampling=sampling,
                                adapter=adapter, tools=chat.tools)
    return fan_out(request, chat.n)


def _choices(chat: ChatRequest) -> list[ChatChoice]:
    return [ChatChoice(i, ToolCallParser() if chat.tool_calls else None, chat.logprobs)
            for i in range(chat.n)]


async def _start(engines: EngineProvider, chat: ChatRequest,
                 requests: list[GenerationRequest]) -> Rows:
    engine = await engines.get()
    return await Rows.start(engine, requests, grammar_param=(
        chat.constraint.param if chat.constraint else None))


async def _complete(engines: EngineProvider, chat: ChatRequest,
                    requests: list[GenerationRequest], model: str) -> dict[str, Any]:
    rows = await _start(engines, chat, requests)
    choices = _choices(chat)
    try:
        async for row, event in rows:
            if isinstance(event, TextDelta):
                choices[row].add(event)
            elif isinstance(event, Finished):
                choices[row].finish(event)
    except EngineError as exc:
        raise engine_error(exc) from exc
    finally:
        await rows.aclose()
    body = wire.completion(id=wire.completion_id(), model=model, created=wire.now(),
                           choices=[c.message() for c in choices],
                           usage_block=_usage(choices))
    runs.answered(body)
    return body


def _usage(choices: list[ChatChoice]) -> dict[str, int]:
    done = [c.finished for c in choices if c.finished is not None]
    return wire.usage(done[0].prompt_tokens if done else 0,
                      sum(f.completion_tokens for f in done))


async def _frames(rows: Rows, chat: ChatRequest, model: str) -> AsyncIterator[bytes]:
    cid, created = wire.completion_id(), wire.now()
    choices = _choices(chat)

    def frame(chunk_choices: list[dict[str, Any]]) -> bytes:
        return sse.data(wire.chunk(id=cid, model=model, created=created, choices=chunk_choices))

    for choice in choices:
        yield frame([wire.chunk_choice(index=choice.index,
                                       delta={"role": "assistant", "content": ""})])
    try:
        async for row, event in rows:
            out: list[dict[str, Any]] = []
            if isinstance(event, TextDelta):
                out = choices[row].add(event)
            elif isinstance(event, Finished):
                out = choices[row].finish(event)
            for chunk_choice in out:
                yield frame([chunk_choice])
        if chat.include_usage:
            yield sse.data(wire.chunk(id=cid, model=model, created=created, choices=[],
                                 usage_block=_usage(choices)))
        if runs.current.get() is not None:  # the assembled answer, for the stored run
            runs.answered(wire.completion(id=cid, model=model, created=created,
                                          choices=[c.message() for c in choices],
                                          usage_block=_usage(choices)))
        yield sse.DONE
    except EngineError as exc:
        yield sse.error_frame(exc)
    finally:
        await rows.aclose()


async def answer(receive: Receive, engines: EngineProvider, chat: ChatRequest, *,
                 base_model: str, adapter: AdapterRef | None, model: str) -> Response:
    """The HTTP answer to ``chat``; refusals raise :class:`WireError`."""
    await structured.validate(chat.constraint)
    requests = requests_for(chat, base_model=base_model, adapter=adapter, engines=engines)
    if not chat.stream:
        return await sse.json_answer(receive, _complete(engines, chat, requests, model))
    return sse.stream(_frames(await _start(engines, chat, requests), chat, model))


async def serve(receive: Receive, engines: EngineProvider, body: dict[str, Any], *,
                base_model: str, adapter: AdapterRef | None, model: str) -> Response:
    """The HTTP answer to a chat ``body`` (parsed here); refusals raise :class:`WireError`."""
    request = wire.parse_chat_request(body, max_n=engines.limits.max_n)
    return await answer(receive, engines, request, base_model=base_model, adapter=adapter,
                        model=model)
