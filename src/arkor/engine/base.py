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
    ├── GrammarError             a grammar the engine cannot compile or enforce (400)
    ├── InvalidRequest           a field the engine cannot honour as given, e.g. a token id
    │                            outside the vocabulary (400; ``param`` names the field)
    └── AdapterLoadError         the adapter directory could not be loaded (400/500, caller's call)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter directory, under an id stable for its content (``job:<uuid>:final``)."""

    key: str
    path: Path


@dataclass(frozen=True)
class SamplingParams:
    """How one row picks its tokens. The defaults change nothing.

    ``temperature`` 0 means greedy; ``max_tokens`` None runs until EOS or the context end.
    Penalties follow vLLM: ``presence_penalty``/``frequency_penalty`` (OpenAI's, -2..2) count
    the completion's own tokens; ``repetition_penalty`` (> 0, 1 = off) divides positive
    logits (multiplies negative ones) of every token seen in prompt or completion.
    ``logit_bias`` adds to token ids' logits before anything else. ``top_k`` 0 and ``min_p``
    0 are off. ``min_tokens`` holds EOS and stop strings back until that many tokens;
    ``ignore_eos`` never stops on EOS (a fixed length for benchmarks). ``logprobs`` None
    returns none; ``k`` >= 0 returns the chosen token's log-probability and its ``k`` most
    likely alternatives (of the distribution after bias, penalties and the grammar mask,
    before temperature, as OpenAI reports them; forbidden alternatives read -9999.0).
    ``grammar`` is an llguidance grammar (the output of ``llguidance.grammar_from``); the
    row's tokens are masked to it at every step, and the row ends with ``stop`` when the
    grammar is complete.
    """

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    min_tokens: int = 0
    ignore_eos: bool = False
    logprobs: int | None = None
    grammar: str | None = None


@dataclass(frozen=True)
class ToolCall:
    """A call an assistant message made: ``arguments`` is the JSON text the model wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatMessage:
    """One message; ``role`` is system, user, assistant or tool, ``content`` already flat text.

    An assistant message may carry ``tool_calls`` (its ``content`` may then be empty); a
    ``tool`` message answers the call named by ``tool_call_id``.
    """

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call: ``parameters`` is its JSON schema (an object)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationRequest:
    """A chat request (``messages``, rendered by the base model's chat template, with
    ``tools`` when there are any), or with ``prompt`` set, a raw text completion: the prompt
    is tokenized as is and ``messages``/``tools`` are not used. ``prompt_logprobs`` (raw
    prompts only) asks for each prompt token's log-probability and that many alternatives,
    reported once in :class:`Finished`."""

    base_model: str
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams
    adapter: AdapterRef | None = None
    tools: tuple[ToolSpec, ...] = ()
    prompt: str | None = None
    prompt_logprobs: int | None = None


@dataclass(frozen=True)
class TopLogprob:
    token: str
    token_id: int
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """One token with its log-probability and the most likely alternatives at its position
    (``top``, most likely first; empty when none were asked for). ``token`` is the token's
    own text; bytes that do not decode alone are written as ``bytes:\\xNN``, as OpenAI does."""

    token: str
    token_id: int
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class TextDelta:
    """New text. With ``SamplingParams.logprobs`` set, ``logprobs`` has one entry per token
    accepted since the previous delta, in order (text held back by a stop-string check is
    sent later with the tokens that made it)."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Finished:
    """The end of a completion. ``prompt_logprobs`` (when the request asked) has one entry per
    prompt token; the first token's is ``None`` (nothing precedes it)."""

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    prompt_logprobs: tuple[TokenLogprob | None, ...] | None = None


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


class GrammarError(EngineError):
    """The request's grammar cannot be compiled or enforced; the message says why."""


class InvalidRequest(EngineError):
    """A request field the engine cannot honour as given; ``param`` is its wire name."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class AdapterLoadError(EngineError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"Adapter {key!r} could not be loaded: {message}")
        self.key = key
        self.message = message
