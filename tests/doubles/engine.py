"""``ScriptedEngine``: a double for our own :class:`~arkor.engine.base.Engine`, for wire and
error-mapping tests only.

Each request takes the next :class:`Reply` from the script (the default reply once the script
is used up): it yields the reply's deltas, then raises its error, or ends with ``Finished``,
or (``finish_reason=None``) stops without one. The engine records every
:class:`~arkor.engine.base.GenerationRequest` it was given, so a test can assert what the
edge parsed and passed on, and counts generations still open, so a test can assert that the
edge closed each one. What the real model generates is tested against the real model
(``tests/engine``, ``tests/edge/test_edge_e2e.py``), never with this double.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from arkor.engine.base import (
    EngineError,
    EngineOverloaded,
    Finished,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
    TokenLogprob,
)

PROMPT_TOKENS = 7


@dataclass(frozen=True)
class Reply:
    """What the engine does with one request. A delta is its text, or a ``TextDelta`` (with
    ``logprobs``); ``completion_tokens`` is the number of deltas; ``prompt_logprobs`` is
    reported in ``Finished`` as is."""

    deltas: tuple[str | TextDelta, ...] = ("Hello", " there", "!")
    finish_reason: FinishReason | None = "stop"
    error: EngineError | None = None
    prompt_tokens: int = PROMPT_TOKENS
    prompt_logprobs: tuple[TokenLogprob | None, ...] | None = None
    pause: float = 0.0  # seconds before each delta: a slow answer a client can walk out of


def overloaded(retry_after: float) -> Reply:
    """Refused before the first token: the wait queue is full."""
    return Reply(deltas=(), error=EngineOverloaded(retry_after))


def refused(error: EngineError) -> Reply:
    """Refused before the first token with ``error`` (``PromptTooLong``, ``EngineUnavailable``)."""
    return Reply(deltas=(), error=error)


def fails_after(deltas: tuple[str | TextDelta, ...], error: EngineError) -> Reply:
    """Yields ``deltas``, then fails: an error mid-stream."""
    return Reply(deltas=deltas, error=error)


def ends_early(deltas: tuple[str | TextDelta, ...]) -> Reply:
    """Yields ``deltas``, then stops without ``Finished``."""
    return Reply(deltas=deltas, finish_reason=None)


class ScriptedEngine:
    """An :class:`~arkor.engine.base.Engine` that answers from a script of :class:`Reply`."""

    def __init__(self, *script: Reply, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.requests: list[GenerationRequest] = []
        self.started = self.closed = False
        self._script: deque[Reply] = deque(script)
        self._open = 0
        self._lock = threading.Lock()

    def script(self, *replies: Reply) -> None:
        """Queue the replies for the next requests, replacing what was left of the script."""
        with self._lock:
            self._script = deque(replies)

    @property
    def open_generations(self) -> int:
        """Generations begun and not yet closed (a slot the real engine would still hold)."""
        return self._open

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        with self._lock:
            self.requests.append(request)
            reply = self._script.popleft() if self._script else self.default
            self._open += 1
        try:
            for delta in reply.deltas:
                if reply.pause:
                    await asyncio.sleep(reply.pause)
                yield delta if isinstance(delta, TextDelta) else TextDelta(delta)
            if reply.error is not None:
                raise reply.error
            if reply.finish_reason is not None:
                yield Finished(reply.finish_reason, prompt_tokens=reply.prompt_tokens,
                               completion_tokens=len(reply.deltas),
                               prompt_logprobs=reply.prompt_logprobs)
        finally:
            with self._lock:
                self._open -= 1
