"""The engine protocol: what the edge asks of whatever turns chat requests into tokens.

Nothing here imports torch, so the HTTP layer can type against it without the local stack.

A request goes in as a :class:`GenerationRequest`; :meth:`Engine.generate` yields
:class:`TextDelta` events and ends with exactly one :class:`Finished`, or raises one of the
errors below. It never hangs: a failing engine turns into :class:`EngineUnavailable`.

Errors::

    EngineError                  catch-all base
    ├── EngineOverloaded         the wait queue is full; retry after ``retry_after`` s (429)
    ├── EngineUnavailable        the engine failed or is closed (503)
    ├── PromptTooLong            prompt leaves no room to generate within the context (400)
    ├── UnknownBaseModel         no base model registered under that name
    └── AdapterLoadError         the adapter directory could not be loaded (400/500, caller's call)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter directory, under an id stable for its content (``job:<uuid>:final``)."""

    key: str
    path: Path


@dataclass(frozen=True)
class SamplingParams:
    """``temperature`` 0 means greedy; ``max_tokens`` None runs until EOS or the context end."""

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChatMessage:
    """One message; ``role`` is system, user, assistant or tool, ``content`` already flat text."""

    role: str
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    base_model: str
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams
    adapter: AdapterRef | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Finished:
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


GenerationEvent = TextDelta | Finished


class Engine(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        """Stream the completion. Closing the iterator (or cancelling its task) frees the slot."""
        ...


class EngineError(Exception):
    """Base of every error an engine raises for a request."""


class EngineOverloaded(EngineError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"The engine is at capacity; retry in {retry_after:.0f} s")
        self.retry_after = retry_after


class EngineUnavailable(EngineError):
    pass


class PromptTooLong(EngineError):
    def __init__(self, prompt_tokens: int, max_context: int, *, estimated: bool = False) -> None:
        size = f"at least {prompt_tokens}" if estimated else str(prompt_tokens)
        super().__init__(
            f"The prompt is {size} tokens; the model's context is {max_context} tokens "
            "and at least one must be left to generate. Shorten the messages."
        )
        self.prompt_tokens = prompt_tokens
        self.max_context = max_context


class UnknownBaseModel(EngineError):
    def __init__(self, name: str) -> None:
        super().__init__(f"No base model named {name!r} is registered")
        self.name = name


class AdapterLoadError(EngineError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"Adapter {key!r} could not be loaded: {message}")
        self.key = key
        self.message = message
