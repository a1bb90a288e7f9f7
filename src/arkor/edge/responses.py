"""``POST /v1/responses``: the Responses API, stateless, over one engine row.

A :class:`ResponseBuilder` (sans-I/O) turns the engine's events into the response object
and, for streaming, OpenAI's event sequence: ``response.created``, ``response.in_progress``;
per output item ``response.output_item.added``, then for a message
``response.content_part.added``, ``response.output_text.delta``…, ``response.output_text.done``,
``response.content_part.done``, or for a call ``response.function_call_arguments.delta``…,
``response.function_call_arguments.done``; ``response.output_item.done``; and finally
``response.completed`` (or ``response.incomplete`` when ``max_output_tokens`` cut it short)
with ``usage``. Every event carries ``sequence_number``; frames are ``event: <type>``.
What the request accepts is in :mod:`arkor.edge.responses_input`.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response
from starlette.types import Receive

from arkor.edge import logprobs as shapes
from arkor.edge import openai_wire as wire
from arkor.edge import runs, sse, structured
from arkor.edge.chat import requests_for
from arkor.edge.responses_input import ResponsesRequest, parse_responses_request
from arkor.edge.serving import (
    EngineProvider,
    Rows,
    engine_error,
)
from arkor.edge.tool_calls import CallArguments, CallStarted, Content, ToolCallEvent, ToolCallParser
from arkor.engine.base import AdapterRef, EngineError, Finished, TextDelta, TokenLogprob


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def _logprob_items(tokens: list[TokenLogprob]) -> list[dict[str, Any]]:
    return [{"token": item["token"], "logprob": item["logprob"], "bytes": item["bytes"],
             "top_logprobs": item["top_logprobs"]} for item in shapes.chat_items(tokens)]


@dataclass
class ResponseBuilder:
    """The response object and its stream events, built from the engine's events."""

    model: str
    echo: dict[str, Any]
    parser: ToolCallParser | None
    want_logprobs: bool = False
    id: str = field(default_factory=lambda: _id("resp"))
    created_at: int = 0
    output: list[dict[str, Any]] = field(default_factory=list)
    status: str = "in_progress"
    usage: dict[str, Any] | None = None
    incomplete: dict[str, str] | None = None
    _message: dict[str, Any] | None = None
    _call: dict[str, Any] | None = None
    _whitespace: str = ""
    _unsent: list[TokenLogprob] = field(default_factory=list)

    def response(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": self.status, "error": None, "incomplete_details": self.incomplete,
            "model": self.model, "output": copy.deepcopy(self.output),
            "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
            "store": False, "truncation": "disabled", "usage": self.usage, **self.echo,
        }

    def opening(self) -> list[dict[str, Any]]:
        return [{"type": "response.created", "response": self.response()},
                {"type": "response.in_progress", "response": self.response()}]

    def add(self, delta: TextDelta) -> list[dict[str, Any]]:
        self._unsent.extend(delta.logprobs)
        events: list[ToolCallEvent] = (self.parser.feed(delta.text) if self.parser is not None
                                       else [Content(delta.text)])
        return self._apply(events)

    def finish(self, finished: Finished) -> list[dict[str, Any]]:
        out = self._apply(self.parser.finish() if self.parser is not None else [])
        if not self.output:
            out += self._text(self._whitespace, force=True)
        out += self._close_message() + self._close_call()
        self.usage = {"input_tokens": finished.prompt_tokens,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": finished.completion_tokens,
                      "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": finished.prompt_tokens + finished.completion_tokens}
        if finished.finish_reason == "length":
            self.status, self.incomplete = "incomplete", {"reason": "max_output_tokens"}
            return [*out, {"type": "response.incomplete", "response": self.response()}]
        self.status = "completed"
        return [*out, {"type": "response.completed", "response": self.response()}]

    def _apply(self, events: list[ToolCallEvent]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in events:
            if isinstance(event, Content):
                out += self._text(event.text)
            elif isinstance(event, CallStarted):
                out += self._close_message() + self._close_call()
                self._whitespace = ""
                out += self._open_call(event)
            elif isinstance(event, CallArguments) and self._call is not None:
                self._call["arguments"] += event.fragment
                out.append({"type": "response.function_call_arguments.delta",
                            "item_id": self._call["id"], "output_index": self._index(),
                            "delta": event.fragment})
        return out

    def _index(self) -> int:
        return len(self.output) - 1

    def _text(self, text: str, *, force: bool = False) -> list[dict[str, Any]]:
        if self._message is None:
            if not force and (self.parser is not None and not text.strip()):
                self._whitespace += text  # no message item for whitespace before a call
                return []
            text, self._whitespace = self._whitespace + text, ""
            out = self._open_message()
        else:
            out = []
        if not text and not force:
            return out
        assert self._message is not None
        part = self._message["content"][0]
        part["text"] += text
        lp = _logprob_items(self._unsent) if self.want_logprobs else []
        part["logprobs"] += lp
        self._unsent = []
        if text:
            out.append({"type": "response.output_text.delta", "item_id": self._message["id"],
                        "output_index": self._index(), "content_index": 0, "delta": text,
                        "logprobs": lp})
        return out

    def _open_message(self) -> list[dict[str, Any]]:
        self._message = {"id": _id("msg"), "type": "message", "status": "in_progress",
                         "role": "assistant", "content": []}
        self.output.append(self._message)
        added = copy.deepcopy(self._message)
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        self._message["content"].append(part)
        return [{"type": "response.output_item.added", "output_index": self._index(),
                 "item": added},
                {"type": "response.content_part.added", "item_id": self._message["id"],
                 "output_index": self._index(), "content_index": 0,
                 "part": copy.deepcopy(part)}]

    def _close_message(self) -> list[dict[str, Any]]:
        message, self._message = self._message, None
        if message is None:
            return []
        index = self.output.index(message)
        message["status"] = "completed"
        part = message["content"][0]
        return [{"type": "response.output_text.done", "item_id": message["id"],
                 "output_index": index, "content_index": 0, "text": part["text"],
                 "logprobs": part["logprobs"]},
                {"type": "response.content_part.done", "item_id": message["id"],
                 "output_index": index, "content_index": 0, "part": copy.deepcopy(part)},
                {"type": "response.output_item.done", "output_index": index,
                 "item": copy.deepcopy(message)}]

    def _open_call(self, event: CallStarted) -> list[dict[str, Any]]:
        self._call = {"id": _id("fc"), "type": "function_call", "status": "in_progress",
                      "call_id": event.id, "name": event.name, "arguments": ""}
        self.output.append(self._call)
        return [{"type": "response.output_item.added", "output_index": self._index(),
                 "item": copy.deepcopy(self._call)}]

    def _close_call(self) -> list[dict[str, Any]]:
        call, self._call = self._call, None
        if call is None:
            return []
        index = self.output.index(call)
        call["arguments"] = call["arguments"].strip() or "{}"
        call["status"] = "completed"
        return [{"type": "response.function_call_arguments.done", "item_id": call["id"],
                 "output_index": index, "name": call["name"], "arguments": call["arguments"]},
                {"type": "response.output_item.done", "output_index": index,
                 "item": copy.deepcopy(call)}]


def _builder(request: ResponsesRequest, model: str) -> ResponseBuilder:
    return ResponseBuilder(model=model, echo=request.echo, created_at=wire.now(),
                           parser=ToolCallParser() if request.chat.tool_calls else None,
                           want_logprobs=request.chat.logprobs)


async def _start(engines: EngineProvider, request: ResponsesRequest, *, base_model: str,
                 adapter: AdapterRef | None) -> Rows:
    chat = request.chat
    rows = requests_for(chat, base_model=base_model, adapter=adapter, engines=engines,
                        max_tokens_param="max_output_tokens")
    engine = await engines.get()
    return await Rows.start(engine, rows, prompt_param="input", grammar_param=(
        chat.constraint.param if chat.constraint else None))


async def _complete(running: Rows, builder: ResponseBuilder) -> dict[str, Any]:
    try:
        async for _row, event in running:
            if isinstance(event, TextDelta):
                builder.add(event)
            elif isinstance(event, Finished):
                builder.finish(event)
    except EngineError as exc:
        raise engine_error(exc, prompt_param="input") from exc
    finally:
        await running.aclose()
    body = builder.response()
    runs.answered(body)
    return body


async def _frames(running: Rows, builder: ResponseBuilder) -> AsyncIterator[bytes]:
    sequence = 0

    def frames(events: list[dict[str, Any]]) -> list[bytes]:
        nonlocal sequence
        out = []
        for event in events:
            out.append(sse.event(event["type"], {**event, "sequence_number": sequence}))
            sequence += 1
        return out

    for frame in frames(builder.opening()):
        yield frame
    finished = False
    failure: BaseException | None = None
    try:
        async for _row, event in running:
            events: list[dict[str, Any]] = []
            if isinstance(event, TextDelta):
                events = builder.add(event)
            elif isinstance(event, Finished):
                events, finished = builder.finish(event), True
            for frame in frames(events):
                yield frame
    except EngineError as exc:
        failure = exc
    finally:
        await running.aclose()
    if finished and runs.current.get() is not None:  # the answer, for the stored run
        runs.answered(builder.response())
    if not finished:
        error = sse.broken_off(failure)
        for frame in frames([{"type": "error", "code": error.code, "message": error.message,
                              "param": None}]):
            yield frame


async def serve(receive: Receive, engines: EngineProvider, body: dict[str, Any], *,
                 base_model: str, adapter: AdapterRef | None, model: str) -> Response:
    request = parse_responses_request(body)
    await structured.validate(request.chat.constraint)
    builder = _builder(request, model)
    if not request.chat.stream:
        async def run() -> dict[str, Any]:
            running = await _start(engines, request, base_model=base_model, adapter=adapter)
            return await _complete(running, builder)

        return await sse.json_answer(receive, run())
    running = await _start(engines, request, base_model=base_model, adapter=adapter)
    return sse.stream(_frames(running, builder))
