"""The Responses API's request (``POST /v1/responses``) → a :class:`ChatRequest`.

Stateless: the whole conversation comes in ``input``, a string (one user message) or items:
messages (``role`` user, assistant, system or developer; string content or ``input_text`` /
``output_text`` parts), ``function_call`` (the assistant's earlier call; consecutive calls are
one assistant turn) and ``function_call_output`` (a tool's result). ``reasoning`` items are
skipped. ``instructions`` is a system message before them.

Honoured: ``max_output_tokens``, ``temperature``, ``top_p`` (and the other sampling fields of
:mod:`arkor.edge.sampling`), ``text.format`` (``text``, ``json_object``, ``json_schema``),
``tools`` (function tools, the flat shape), ``tool_choice``, ``parallel_tool_calls``,
``max_tool_calls: 1`` (one call at most), ``top_logprobs`` with ``include:
["message.output_text.logprobs"]``, ``stream``. ``store`` (default
true: the response is kept with the deployment's runs and ``GET /v1/responses/{id}`` returns
it; see :mod:`arkor.edge.stored`) and ``metadata`` are echoed. Ignored: ``model``, ``user``,
``reasoning``, ``truncation``, ``service_tier``, ``safety_identifier``, ``prompt_cache_key``,
``text.verbosity``, ``stream_options``.
Refused: ``previous_response_id``, ``conversation``, ``prompt``, ``background: true``, and
tools other than functions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from arkor.edge import sampling as sampling_fields
from arkor.edge import structured, tools
from arkor.edge.errors import bad
from arkor.edge.fields import boolean, integer, obj, string
from arkor.edge.messages import arguments_text, text_content
from arkor.edge.openai_wire import MAX_TOP_LOGPROBS, ChatRequest
from arkor.engine.base import ChatMessage, ToolCall

MESSAGE_ROLES = ("user", "assistant", "system", "developer")
LOGPROBS_INCLUDE = "message.output_text.logprobs"
STATEFUL = {"previous_response_id": "send the whole conversation as input",
            "conversation": "send the whole conversation as input",
            "prompt": "send the prompt's text as input and instructions"}


@dataclass(frozen=True)
class ResponsesRequest:
    """The chat to run, and what the response object repeats of the request."""

    chat: ChatRequest
    echo: dict[str, Any]


def _with_call(messages: list[ChatMessage], call: ToolCall) -> None:
    """Add ``call`` to the assistant turn just before it, or start one."""
    if messages and messages[-1].role == "assistant":
        last = messages[-1]
        messages[-1] = replace(last, tool_calls=(*last.tool_calls, call))
    else:
        messages.append(ChatMessage(role="assistant", content="", tool_calls=(call,)))


def _item(item: Any, param: str, messages: list[ChatMessage]) -> None:
    if not isinstance(item, dict):
        raise bad(f"{param} must be an object", param, "invalid_type")
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in MESSAGE_ROLES:
            raise bad(f"{param}.role must be one of {', '.join(MESSAGE_ROLES)}",
                      f"{param}.role")
        text = text_content(item.get("content"), f"{param}.content", required=True)
        messages.append(ChatMessage(role="system" if role == "developer" else role,
                                    content=text))
    elif kind == "function_call":
        call_id = string(item, "call_id", param=f"{param}.call_id", required=True)
        name = string(item, "name", param=f"{param}.name", required=True)
        assert call_id is not None and name is not None
        _with_call(messages, ToolCall(id=call_id, name=name, arguments=arguments_text(
            item.get("arguments", "{}"), f"{param}.arguments")))
    elif kind == "function_call_output":
        call_id = string(item, "call_id", param=f"{param}.call_id", required=True)
        output = text_content(item.get("output"), f"{param}.output", required=True)
        messages.append(ChatMessage(role="tool", content=output, tool_call_id=call_id))
    elif kind != "reasoning":
        raise bad(f"{param}.type {str(kind)[:40]!r} is not supported (message, "
                  "function_call, function_call_output)", f"{param}.type",
                  "unsupported_value")


def parse_input(body: dict[str, Any]) -> tuple[ChatMessage, ...]:
    messages: list[ChatMessage] = []
    instructions = string(body, "instructions")
    if instructions:
        messages.append(ChatMessage(role="system", content=instructions))
    raw = body.get("input")
    if isinstance(raw, str):
        messages.append(ChatMessage(role="user", content=raw))
    elif isinstance(raw, list) and raw:
        for index, item in enumerate(raw):
            _item(item, f"input[{index}]", messages)
    elif raw is None:
        raise bad("input is required", "input", "missing_required_parameter")
    else:
        raise bad("input must be a string or a non-empty array of items", "input",
                  "invalid_type")
    if not any(m.role != "system" for m in messages):
        raise bad("input has no message to answer", "input")
    return tuple(messages)


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for name, fix in STATEFUL.items():
        if body.get(name) is not None:
            raise bad(f"{name} is not supported: this server keeps no state; {fix}", name,
                      "unsupported_parameter")
    if body.get("background"):
        raise bad("background responses are not supported; send stream: true instead",
                  "background", "unsupported_value")


def _logprobs(body: dict[str, Any]) -> tuple[bool, int | None]:
    include = body.get("include") or []
    if not isinstance(include, list):
        raise bad("include must be an array", "include", "invalid_type")
    top = integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    wanted = LOGPROBS_INCLUDE in include
    return wanted, (top or 0) if wanted else None


def parse_responses_request(body: dict[str, Any]) -> ResponsesRequest:
    _refuse_unsupported(body)
    messages = parse_input(body)
    text = obj(body, "text") or {}
    fmt = text.get("format")
    answer = structured.from_response_format(fmt, "text.format", flat=True)
    offered = tools.parse_tools(body.get("tools"), flat=True)
    choice = tools.parse_tool_choice(body, offered, flat=True)
    if integer(body, "max_tool_calls", 1) == 1:
        choice = replace(choice, parallel=False)
    constraint = tools.constraint(offered, choice, answer)
    sampling = sampling_fields.parse_sampling(body, max_tokens_names=("max_output_tokens",))
    wanted, k = _logprobs(body)
    specs = tools.specs(offered, choice)
    chat = ChatRequest(
        messages=messages,
        sampling=sampling_fields.with_output(sampling, logprobs=k, constraint=constraint),
        stream=boolean(body, "stream", False), logprobs=wanted, tools=specs,
        tool_calls=bool(specs), constraint=constraint)
    echo = {
        "instructions": body.get("instructions"),
        "max_output_tokens": sampling.max_tokens,
        "parallel_tool_calls": choice.parallel,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "tool_choice": body.get("tool_choice") or ("auto" if offered else "none"),
        "tools": [_tool_echo(t) for t in offered],
        "text": {"format": fmt if isinstance(fmt, dict) else {"type": "text"}},
        "metadata": body.get("metadata") or {},
        "store": body.get("store", True) is not False,
        "user": body.get("user"),
        "top_logprobs": k,
    }
    return ResponsesRequest(chat=chat, echo=echo)


def _tool_echo(tool: tools.Tool) -> dict[str, Any]:
    return {"type": "function", "name": tool.spec.name,
            "description": tool.spec.description or None,
            "parameters": dict(tool.spec.parameters), "strict": tool.strict}
