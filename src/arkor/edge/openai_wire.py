"""The OpenAI wire format of ``POST /v1/chat/completions``: request and answer shapes.

Here: body parsing for every edge route (:func:`parse_body`, :mod:`arkor.json_input`: depth,
valid Unicode), :func:`parse_chat_request` and the ``chat.completion`` / chunk shapes. The
error (:class:`WireError`) is :mod:`arkor.edge.errors`'s, the field readers
:mod:`arkor.edge.fields`'s; the other routes have their own modules (``completions``,
``responses``).

A chat request honours ``messages`` (system, developer = system, user, assistant with
``tool_calls``, tool with ``tool_call_id``; string content or text parts), the sampling fields
of :mod:`arkor.edge.sampling`, ``n`` (up to the operator's ``max_n``, each choice its own
engine row), ``logprobs`` / ``top_logprobs`` (0-20), ``response_format`` and vLLM's
``structured_outputs`` (:mod:`arkor.edge.structured`), ``tools`` / ``tool_choice`` /
``parallel_tool_calls`` (:mod:`arkor.edge.tools`), ``stream`` and
``stream_options.include_usage``, ``store`` and ``metadata`` (a stored completion:
:mod:`arkor.edge.stored`). Valid OpenAI fields with no effect here (``model``, ``user``,
``reasoning_effort``, ...) and unknown fields are ignored;
fields that cannot be honoured are refused with 400 (``functions``,
``function_call``, ``audio``, non-text ``modalities``). Numbers are JSON numbers, never
booleans, ``NaN`` or ``Infinity``. docs/edge.md has the full table.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from arkor import json_input
from arkor.edge import sampling as sampling_fields
from arkor.edge import structured, tools
from arkor.edge.errors import WireError as WireError
from arkor.edge.errors import bad
from arkor.edge.fields import boolean, integer, obj
from arkor.edge.messages import parse_messages
from arkor.edge.serving import DEFAULT_MAX_N
from arkor.edge.structured import Constraint
from arkor.engine.base import ChatMessage, SamplingParams, ToolSpec

MAX_TOP_LOGPROBS = 20


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json_input.loads(raw)
    except json_input.JsonInputError as exc:
        raise WireError(400, exc.message, param=exc.where,
                        code="invalid_value" if exc.where else "invalid_json") from None
    except (ValueError, UnicodeDecodeError):
        raise WireError(400, "The request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise WireError(400, "The request body must be a JSON object", code="invalid_type")
    return body


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat request. ``constraint`` (when set) is also in ``sampling.grammar``;
    it is kept to name the field when the grammar is refused. ``tool_calls`` says whether
    the output is parsed for tool calls (tools were offered)."""

    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams
    stream: bool = False
    include_usage: bool = False
    n: int = 1
    logprobs: bool = False
    tools: tuple[ToolSpec, ...] = ()
    tool_calls: bool = False
    constraint: Constraint | None = None


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for name, fix in (("functions", "send them as tools"),
                      ("function_call", "use tool_choice")):
        if body.get(name) is not None:
            raise bad(f"{name} (the legacy function-calling API) is not supported; {fix}",
                      name, "unsupported_parameter")
    if body.get("audio") is not None:
        raise bad("audio output is not supported", "audio", "unsupported_parameter")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise bad("only the text modality is supported", "modalities", "unsupported_value")


def logprobs_request(body: dict[str, Any]) -> tuple[bool, int | None]:
    """``logprobs`` / ``top_logprobs`` → (report them, the engine's ``k``)."""
    wanted = boolean(body, "logprobs", False)
    top = integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    if top is not None and not wanted:
        raise bad("top_logprobs needs logprobs: true", "top_logprobs")
    return wanted, (top or 0) if wanted else None


def stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    """``stream`` and ``stream_options.include_usage``."""
    stream = boolean(body, "stream", False)
    options = obj(body, "stream_options")
    include_usage = options is not None and options.get("include_usage") is True
    return stream, include_usage


def parse_chat_request(body: dict[str, Any], *, max_n: int = DEFAULT_MAX_N) -> ChatRequest:
    messages = parse_messages(body.get("messages"))
    _refuse_unsupported(body)
    sampling = sampling_fields.parse_sampling(body)
    n = integer(body, "n", 1, max_n) or 1
    wanted, k = logprobs_request(body)
    stream, include_usage = stream_flags(body)
    offered = tools.parse_tools(body.get("tools"))
    choice = tools.parse_tool_choice(body, offered)
    answer = structured.chat_constraint(body)
    constraint = tools.constraint(offered, choice, answer)
    return ChatRequest(
        messages=messages,
        sampling=sampling_fields.with_output(sampling, logprobs=k, constraint=constraint),
        stream=stream, include_usage=include_usage, n=n, logprobs=wanted,
        tools=tools.specs(offered, choice), tool_calls=bool(tools.specs(offered, choice)),
        constraint=constraint,
    )


def completion_id(prefix: str = "chatcmpl") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(*, id: str, model: str, created: int, choices: list[dict[str, Any]],
               usage_block: dict[str, int]) -> dict[str, Any]:
    """A ``chat.completion``; ``choices`` from :func:`choice`."""
    return {"id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": choices, "usage": usage_block, "system_fingerprint": None}


def choice(*, index: int, content: str | None, finish_reason: str,
           tool_calls: list[dict[str, Any]] | None = None,
           logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message,
            "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None},
            "finish_reason": finish_reason}


def chunk(*, id: str, model: str, created: int, choices: list[dict[str, Any]],
          usage_block: dict[str, int] | None = None) -> dict[str, Any]:
    """A ``chat.completion.chunk``; ``choices`` from :func:`chunk_choice` (empty for the
    usage chunk)."""
    body: dict[str, Any] = {"id": id, "object": "chat.completion.chunk", "created": created,
                            "model": model, "system_fingerprint": None, "choices": choices}
    if usage_block is not None:
        body["usage"] = usage_block
    return body


def chunk_choice(*, index: int, delta: dict[str, Any], finish_reason: str | None = None,
                 logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"index": index, "delta": delta,
            "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None},
            "finish_reason": finish_reason}


def now() -> int:
    return int(time.time())
