"""The OpenAI Chat Completions wire format: request validation, responses, stream chunks.

Accepted: ``messages`` (system, developer, user, assistant, tool; string content or text
parts), ``temperature``, ``top_p``, ``max_tokens`` / ``max_completion_tokens``, ``stop``,
``seed`` (an integer in the signed 64-bit range, as OpenAI's), ``stream``,
``stream_options.include_usage``, ``n`` (1 only). Numbers are JSON numbers, never booleans,
``NaN`` or ``Infinity``; the body obeys :mod:`arkor.json_input` (depth, valid Unicode).
Ignored (valid, no effect here): ``model`` (the deployment pins it), ``user``, ``metadata``,
``store``, ``frequency_penalty``, ``presence_penalty``, ``logit_bias``, ``service_tier``,
``parallel_tool_calls``, ``reasoning_effort``, ``prediction``, ``web_search_options``.
Rejected with 400: ``n`` > 1, ``logprobs``/``top_logprobs``, non-empty ``tools`` or
``functions``, ``tool_choice`` other than ``none``/``auto``, ``response_format`` other than
``text``, ``audio`` or a non-text ``modalities``: the engine cannot honour them, and
silently ignoring them would return something the caller did not ask for.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from arkor import json_input
from arkor.engine.base import ChatMessage, SamplingParams

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_STOP_SEQUENCES = 4
SEED_RANGE = (-(2**63), 2**63 - 1)


class WireError(Exception):
    """A request the edge refuses, in the OpenAI error shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams
    stream: bool
    include_usage: bool


def _bad(message: str, param: str, code: str = "invalid_value") -> WireError:
    return WireError(400, message, param=param, code=code)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise _bad(f"{name} must be a number", name, "invalid_type")
    if not low <= value <= high:
        raise _bad(f"{name} must be between {low:g} and {high:g}", name)
    return float(value)


def _integer(body: dict[str, Any], name: str, low: int, high: int | None = None
             ) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be an integer", name, "invalid_type")
    if value < low:
        raise _bad(f"{name} must be at least {low}", name)
    if high is not None and value > high:
        raise _bad(f"{name} must be at most {high}", name)
    return value


def _content(message: dict[str, Any], index: int) -> str:
    param = f"messages[{index}].content"
    content = message.get("content")
    if content is None:
        if message.get("role") == "assistant":
            return ""
        raise _bad(f"{param} is required", param, "missing_required_parameter")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part_index, part in enumerate(content):
            where = f"{param}[{part_index}]"
            if not isinstance(part, dict) or part.get("type") not in ("text", "input_text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _bad(f"{where}: only text parts are supported (got {kind!r})", where)
            if not isinstance(part.get("text"), str):
                raise _bad(f"{where}.text must be a string", f"{where}.text", "invalid_type")
            texts.append(part["text"])
        return "".join(texts)
    raise _bad(f"{param} must be a string or a list of text parts", param, "invalid_type")


def _messages(body: dict[str, Any]) -> tuple[ChatMessage, ...]:
    raw = body.get("messages")
    if raw is None:
        raise _bad("messages is required", "messages", "missing_required_parameter")
    if not isinstance(raw, list) or not raw:
        raise _bad("messages must be a non-empty array", "messages", "invalid_type")
    messages = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict):
            raise _bad(f"messages[{index}] must be an object", f"messages[{index}]",
                       "invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise _bad(f"messages[{index}].role must be one of {', '.join(ROLES)}",
                       f"messages[{index}].role")
        text = _content(message, index)
        messages.append(ChatMessage(role="system" if role == "developer" else role,
                                    content=text))
    return tuple(messages)


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise _bad("stop must be a non-empty string or an array of them", "stop",
                   "invalid_type")
    if len(stop) > MAX_STOP_SEQUENCES:
        raise _bad(f"stop takes at most {MAX_STOP_SEQUENCES} sequences", "stop")
    return tuple(stop)


def _refuse_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise _bad("n > 1 is not supported; send separate requests", "n", "unsupported_value")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise _bad("logprobs are not supported", "logprobs", "unsupported_parameter")
    for name in ("tools", "functions"):
        if body.get(name):
            raise _bad(f"{name} (tool calling) is not supported by this deployment", name,
                       "unsupported_parameter")
    tool_choice = body.get("tool_choice")
    if tool_choice not in (None, "none", "auto"):
        raise _bad("tool_choice is not supported by this deployment", "tool_choice",
                   "unsupported_parameter")
    response_format = body.get("response_format")
    if response_format is not None and (not isinstance(response_format, dict)
                                        or response_format.get("type") != "text"):
        raise _bad("response_format other than {\"type\": \"text\"} is not supported",
                   "response_format", "unsupported_parameter")
    if body.get("audio") is not None:
        raise _bad("audio output is not supported", "audio", "unsupported_parameter")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise _bad("only the text modality is supported", "modalities", "unsupported_value")


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


def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    messages = _messages(body)
    _refuse_unsupported(body)
    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p == 0.0:
        raise _bad("top_p must be greater than 0", "top_p")
    max_tokens = _integer(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1)
    seed = _integer(body, "seed", *SEED_RANGE)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("stream must be a boolean", "stream", "invalid_type")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise _bad("stream_options must be an object", "stream_options", "invalid_type")
        include_usage = options.get("include_usage", False) is True
    sampling = SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if temperature is None else temperature,
        top_p=1.0 if top_p is None else top_p,
        seed=seed,
        stop=_stop(body),
    )
    return ChatRequest(messages=messages, sampling=sampling, stream=stream,
                       include_usage=include_usage)


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(*, id: str, model: str, created: int, text: str, finish_reason: str,
               prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                                             "refusal": None},
                     "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage(prompt_tokens, completion_tokens),
        "system_fingerprint": None,
    }


def chunk(*, id: str, model: str, created: int, delta: dict[str, Any] | None,
          finish_reason: str | None = None, usage_block: dict[str, int] | None = None
          ) -> bytes:
    body: dict[str, Any] = {"id": id, "object": "chat.completion.chunk", "created": created,
                            "model": model, "system_fingerprint": None}
    if delta is None:
        body["choices"] = []
    else:
        body["choices"] = [{"index": 0, "delta": delta, "logprobs": None,
                            "finish_reason": finish_reason}]
    if usage_block is not None:
        body["usage"] = usage_block
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def now() -> int:
    return int(time.time())
