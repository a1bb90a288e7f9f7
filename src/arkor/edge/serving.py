"""Running engine requests for the edge's routes: the engine provider, the operator's limits,
engine errors as HTTP errors, and :class:`Rows` (one request's ``n`` choices decoding side by
side).

Shared by every route of the edge and, through :mod:`arkor.server`, the control plane's
``/v1/inference/chat``. Errors the engine raises before a row's first event become HTTP
errors (429 with ``Retry-After``, 503, 400 for a prompt too long or a grammar the engine
refuses); an error after streaming began is the route's to report in its stream. Closing
:class:`Rows` closes every engine iterator, which frees their slots at once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from starlette.types import Receive

from arkor.edge import runs
from arkor.edge.errors import WireError
from arkor.engine.base import (
    AdapterLoadError,
    Engine,
    EngineError,
    EngineOverloaded,
    EngineUnavailable,
    Finished,
    GenerationEvent,
    GenerationRequest,
    GrammarError,
    InvalidRequest,
    PromptTooLong,
    SamplingParams,
    UnknownBaseModel,
)

DEFAULT_MAX_N = 8

_SEED_SPAN = 2**64
_SEED_LOW = -(2**63)
T = TypeVar("T")


@dataclass(frozen=True)
class OutputLimits:
    """The operator's bounds: a request without ``max_tokens`` gets ``default_max_tokens``;
    one asking for more than ``max_tokens_cap`` is refused (400), as OpenAI refuses a
    ``max_tokens`` beyond a model's limit; ``n`` (choices per request) is at most ``max_n``."""

    default_max_tokens: int = 1024
    max_tokens_cap: int = 4096
    max_n: int = DEFAULT_MAX_N


class EngineProvider:
    """Creates and starts the engine on first use, so servers that never infer stay light."""

    def __init__(self, factory: Callable[[], Engine] | None = None,
                 engine: Engine | None = None, *, limits: OutputLimits | None = None) -> None:
        self.limits = limits or OutputLimits()
        self._factory = factory
        self._engine = engine
        self._started = False
        self._lock = asyncio.Lock()

    @property
    def started(self) -> Engine | None:
        """The engine once it is serving (None before its first use): for readers such as
        /metrics that must not start one."""
        return self._engine if self._started else None

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


class EndedEarly(EngineError):
    """An engine iterator stopped without its ``Finished`` (a broken engine): the request
    fails like any engine error (503), streamed or not."""

    def __init__(self) -> None:
        super().__init__("The engine ended the request early")


def engine_error(exc: EngineError, *, grammar_param: str | None = None,
                 prompt_param: str = "messages") -> WireError:
    if isinstance(exc, EngineOverloaded):
        retry = max(1, math.ceil(exc.retry_after))
        return WireError(429, str(exc), kind="rate_limit_error", code="engine_overloaded",
                         headers={"Retry-After": str(retry)})
    if isinstance(exc, PromptTooLong):
        return WireError(400, str(exc), param=prompt_param, code="context_length_exceeded")
    if isinstance(exc, GrammarError):
        return WireError(400, str(exc), param=grammar_param, code="invalid_grammar")
    if isinstance(exc, AdapterLoadError | UnknownBaseModel):
        return WireError(503, f"This deployment's model could not be loaded: {exc}",
                         kind="server_error", code="model_unavailable")
    if isinstance(exc, InvalidRequest):
        return WireError(400, str(exc), param=exc.param, code="invalid_value")
    if isinstance(exc, EngineUnavailable):
        return WireError(503, f"The inference engine is unavailable: {exc}",
                         kind="server_error", code="engine_unavailable")
    return WireError(503, f"Inference failed: {exc}", kind="server_error",
                     code="engine_error")


def bounded(sampling: SamplingParams, limits: OutputLimits, *, param: str = "max_tokens",
            default: int | None = None) -> SamplingParams:
    """``sampling`` with the operator's default ``max_tokens``, or refused beyond the cap."""
    if sampling.max_tokens is None:
        return replace(sampling, max_tokens=default or limits.default_max_tokens)
    if sampling.max_tokens > limits.max_tokens_cap:
        raise WireError(400, f"{param} is {sampling.max_tokens}; this server generates at "
                             f"most {limits.max_tokens_cap} tokens per request",
                        param=param, code="max_tokens_too_large")
    return sampling


def choice_seeds(seed: int | None, n: int) -> list[int | None]:
    """One seed per choice: ``seed``, ``seed + 1``, ... (wrapping in the signed 64-bit
    range), so a seeded request is reproducible and its choices still differ."""
    if seed is None:
        return [None] * n
    return [(seed + i - _SEED_LOW) % _SEED_SPAN + _SEED_LOW for i in range(n)]


def fan_out(request: GenerationRequest, n: int) -> list[GenerationRequest]:
    """``request`` once per choice, each with its own seed."""
    if n == 1:
        return [request]
    return [replace(request, sampling=replace(request.sampling, seed=seed))
            for seed in choice_seeds(request.sampling.seed, n)]


CLIENT_CLOSED_REQUEST = 499
"""Status recorded (never seen by anyone) for a request whose client left first."""


class ClientGone(Exception):
    """The caller disconnected before the answer was ready; nothing is left to send."""


async def while_connected(receive: Receive, work: Awaitable[T]) -> T:
    """``work``, stopped the moment the client goes away (raising :class:`ClientGone`).

    Call it after the request body has been read: ``receive`` then yields only
    ``http.disconnect``.
    """
    answer = asyncio.ensure_future(work)
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


async def _first(events: AsyncIterator[GenerationEvent], grammar_param: str | None,
                 prompt_param: str) -> GenerationEvent:
    try:
        return await anext(events)
    except EngineError as exc:
        raise engine_error(exc, grammar_param=grammar_param,
                           prompt_param=prompt_param) from exc
    except StopAsyncIteration:
        raise WireError(503, "The engine ended the request without an answer",
                        kind="server_error", code="engine_error") from None


class Rows:
    """Engine requests decoding side by side (a request's choices; they share batches).

    :meth:`start` waits for every row's first event, so an early refusal is an HTTP error
    and no row is left running; iterating yields ``(row, event)`` as they come, each row
    ending with its ``Finished``. Errors after the start are raised as :class:`EngineError`.
    Always :meth:`aclose` (or exhaust) it.
    """

    def __init__(self, iterators: list[AsyncIterator[GenerationEvent]],
                 firsts: list[GenerationEvent]) -> None:
        self._iterators = iterators
        self._firsts = firsts
        self._pumps: list[asyncio.Task[None]] = []
        self._tap = runs.current.get()  # the run being recorded, if one is

    @classmethod
    async def start(cls, engine: Engine, requests: Sequence[GenerationRequest], *,
                    grammar_param: str | None = None, prompt_param: str = "messages") -> Rows:
        iterators = [engine.generate(request) for request in requests]
        if len(iterators) == 1:  # the common case: no tasks
            try:
                return cls(iterators, [await _first(iterators[0], grammar_param, prompt_param)])
            except BaseException:
                await _close_all(iterators)
                raise
        firsts = [asyncio.ensure_future(_first(it, grammar_param, prompt_param))
                  for it in iterators]
        try:
            await asyncio.wait(firsts, return_when=asyncio.FIRST_EXCEPTION)
            for task in firsts:
                error = task.exception() if task.done() else None
                if error is not None:
                    raise error
        except BaseException:
            for task in firsts:
                task.cancel()
            await asyncio.gather(*firsts, return_exceptions=True)
            await _close_all(iterators)
            raise
        return cls(iterators, [task.result() for task in firsts])

    def __len__(self) -> int:
        return len(self._iterators)

    async def __aiter__(self) -> AsyncIterator[tuple[int, GenerationEvent]]:
        tap = self._tap
        try:
            for row, event in enumerate(self._firsts):
                if tap is not None:
                    tap.event(row, event)
                yield row, event
            running = [row for row, event in enumerate(self._firsts)
                       if not isinstance(event, Finished)]
            if len(running) == 1:
                row = running[0]
                async for event in self._iterators[row]:
                    if tap is not None:
                        tap.event(row, event)
                    yield row, event
                    if isinstance(event, Finished):
                        running = []
                if running:
                    raise EndedEarly()
                return
            queue: asyncio.Queue[tuple[int, GenerationEvent | BaseException | None]] = (
                asyncio.Queue())
            self._pumps = [asyncio.create_task(self._pump(row, queue)) for row in running]
            left, unfinished = len(running), set(running)
            while left:
                row, item = await queue.get()
                if item is None:
                    left -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    if isinstance(item, Finished):
                        unfinished.discard(row)
                    if tap is not None:
                        tap.event(row, item)
                    yield row, item
            if unfinished:
                raise EndedEarly()
        except Exception as exc:
            if tap is not None:
                tap.error = str(exc) or type(exc).__name__
            raise
        finally:
            await self.aclose()

    async def _pump(self, row: int,
                    queue: asyncio.Queue[tuple[int, GenerationEvent | BaseException | None]]
                    ) -> None:
        try:
            async for event in self._iterators[row]:
                queue.put_nowait((row, event))
        except Exception as exc:
            queue.put_nowait((row, exc))
        queue.put_nowait((row, None))

    async def aclose(self) -> None:
        pumps, self._pumps = self._pumps, []
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        await _close_all(self._iterators)


async def _close_all(iterators: list[AsyncIterator[GenerationEvent]]) -> None:
    """Close the engine iterators (async generators), freeing their slots."""
    closers = [close() for it in iterators if (close := getattr(it, "aclose", None))]
    await asyncio.gather(*closers, return_exceptions=True)
