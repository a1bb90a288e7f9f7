"""Turning a parsed chat request into an engine call and an OpenAI-shaped answer.

Shared by the edge (``/v1/chat/completions``) and the control plane's
``/v1/inference/chat``. Errors the engine raises before the first token become HTTP errors
(429 with ``Retry-After``, 503, 400 for a prompt too long); an error after streaming began
ends the stream with an ``error`` frame. Closing the stream closes the engine iterator, which
frees the request's slot at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from starlette.types import Receive

from arkor.edge import openai_wire as wire
from arkor.edge.openai_wire import ChatRequest, WireError
from arkor.engine.base import (
    AdapterLoadError,
    AdapterRef,
    Engine,
    EngineError,
    EngineOverloaded,
    EngineUnavailable,
    Finished,
    GenerationEvent,
    GenerationRequest,
    PromptTooLong,
    TextDelta,
    UnknownBaseModel,
)

log = logging.getLogger("arkor.edge")


@dataclass(frozen=True)
class OutputLimits:
    """The operator's bounds on generated tokens: a request without ``max_tokens`` gets
    ``default_max_tokens``; one asking for more than ``max_tokens_cap`` is refused (400), as
    OpenAI refuses a ``max_tokens`` beyond a model's limit."""

    default_max_tokens: int = 1024
    max_tokens_cap: int = 4096


class EngineProvider:
    """Creates and starts the engine on first use, so servers that never infer stay light."""

    def __init__(self, factory: Callable[[], Engine] | None = None,
                 engine: Engine | None = None, *, limits: OutputLimits | None = None) -> None:
        self.limits = limits or OutputLimits()
        self._factory = factory
        self._engine = engine
        self._started = False
        self._lock = asyncio.Lock()

    async def get(self) -> Engine:
        if self._engine is not None and self._started:
            return self._engine
        async with self._lock:
            if self._engine is None:
                if self._factory is None:
                    raise WireError(503, "No inference engine is configured on this server",
                                    kind="server_error", code="engine_unavailable")
                self._engine = await asyncio.to_thread(self._factory)
            if not self._started:
                await self._engine.start()
                self._started = True
        return self._engine

    async def close(self) -> None:
        if self._engine is not None and self._started:
            await self._engine.close()
            self._started = False


def engine_error(exc: EngineError) -> WireError:
    if isinstance(exc, EngineOverloaded):
        retry = max(1, math.ceil(exc.retry_after))
        return WireError(429, str(exc), kind="rate_limit_error", code="engine_overloaded",
                         headers={"Retry-After": str(retry)})
    if isinstance(exc, PromptTooLong):
        return WireError(400, str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, AdapterLoadError | UnknownBaseModel):
        return WireError(503, f"This deployment's model could not be loaded: {exc}",
                         kind="server_error", code="model_unavailable")
    if isinstance(exc, EngineUnavailable):
        return WireError(503, f"The inference engine is unavailable: {exc}",
                         kind="server_error", code="engine_unavailable")
    return WireError(503, f"Inference failed: {exc}", kind="server_error",
                     code="engine_error")


def generation_request(chat: ChatRequest, base_model: str, adapter: AdapterRef | None,
                       limits: OutputLimits) -> GenerationRequest:
    sampling = chat.sampling
    if sampling.max_tokens is None:
        sampling = replace(sampling, max_tokens=limits.default_max_tokens)
    elif sampling.max_tokens > limits.max_tokens_cap:
        raise WireError(400, f"max_tokens is {sampling.max_tokens}; this server generates at "
                             f"most {limits.max_tokens_cap} tokens per request",
                        param="max_tokens", code="max_tokens_too_large")
    return GenerationRequest(base_model=base_model, messages=chat.messages,
                             sampling=sampling, adapter=adapter)


CLIENT_CLOSED_REQUEST = 499
"""Status recorded (never seen by anyone) for a request whose client left first."""


class ClientGone(Exception):
    """The caller disconnected before the answer was ready; nothing is left to send."""


async def complete_while_connected(receive: Receive, engine: Engine,
                                   request: GenerationRequest, *, model: str) -> dict[str, Any]:
    """:func:`complete`, stopped the moment the client goes away (its slot freed at once).

    Call it after the request body has been read: ``receive`` then yields only
    ``http.disconnect``.
    """
    answer = asyncio.ensure_future(complete(engine, request, model=model))
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (answer, gone):
            if not task.done():
                task.cancel()
        await asyncio.gather(answer, gone, return_exceptions=True)
    if answer.done() and not answer.cancelled():
        return answer.result()
    raise ClientGone


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _first(events: AsyncIterator[GenerationEvent]) -> GenerationEvent:
    try:
        return await anext(events)
    except EngineError as exc:
        raise engine_error(exc) from exc
    except StopAsyncIteration:
        raise WireError(503, "The engine ended the request without an answer",
                        kind="server_error", code="engine_error") from None


async def complete(engine: Engine, request: GenerationRequest, *, model: str
                   ) -> dict[str, Any]:
    events = engine.generate(request)
    parts: list[str] = []
    try:
        event = await _first(events)
        while True:
            if isinstance(event, Finished):
                return wire.completion(
                    id=wire.completion_id(), model=model, created=wire.now(),
                    text="".join(parts), finish_reason=event.finish_reason,
                    prompt_tokens=event.prompt_tokens, completion_tokens=event.completion_tokens)
            if isinstance(event, TextDelta):
                parts.append(event.text)
            try:
                event = await anext(events)
            except EngineError as exc:
                raise engine_error(exc) from exc
    finally:
        await events.aclose()


async def stream(engine: Engine, request: GenerationRequest, *, model: str,
                 include_usage: bool) -> AsyncIterator[bytes]:
    """Start generating now (so early errors are HTTP errors), then return the SSE bytes."""
    events = engine.generate(request)
    try:
        first = await _first(events)
    except BaseException:
        await events.aclose()
        raise
    return _frames(events, first, model=model, include_usage=include_usage)


async def _frames(events: AsyncIterator[GenerationEvent], first: GenerationEvent, *,
                  model: str, include_usage: bool) -> AsyncIterator[bytes]:
    cid, created = wire.completion_id(), wire.now()
    yield wire.chunk(id=cid, model=model, created=created,
                     delta={"role": "assistant", "content": ""})
    event: GenerationEvent | None = first
    try:
        while event is not None:
            if isinstance(event, TextDelta):
                if event.text:
                    yield wire.chunk(id=cid, model=model, created=created,
                                     delta={"content": event.text})
            elif isinstance(event, Finished):
                yield wire.chunk(id=cid, model=model, created=created, delta={},
                                 finish_reason=event.finish_reason)
                if include_usage:
                    yield wire.chunk(id=cid, model=model, created=created, delta=None,
                                     usage_block=wire.usage(event.prompt_tokens,
                                                            event.completion_tokens))
                yield wire.DONE
                return
            event = await anext(events, None)
        yield b"data: " + json.dumps(WireError(
            503, "The engine ended the request early", kind="server_error",
            code="engine_error").body()).encode() + b"\n\n"
    except EngineError as exc:
        log.warning("engine failed mid-stream: %s", exc)
        yield b"data: " + json.dumps(engine_error(exc).body()).encode() + b"\n\n"
    finally:
        await events.aclose()
