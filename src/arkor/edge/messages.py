"""Chat messages on the wire → :class:`ChatMessage`.

Roles: ``system``, ``developer`` (a system message), ``user``, ``assistant`` (``content`` may
be null when it has ``tool_calls``) and ``tool`` (answers ``tool_call_id``). Content is a
string or a list of text parts (``text``, ``input_text``, ``output_text``); anything else
(images, audio, files) is refused naming the part.
"""

from __future__ import annotations

import json
from typing import Any

from arkor.edge.errors import bad
from arkor.edge.fields import string
from arkor.engine.base import ChatMessage, ToolCall

ROLES = ("system", "developer", "user", "assistant", "tool")
TEXT_PARTS = ("text", "input_text", "output_text")


def text_content(content: Any, param: str, *, required: bool) -> str:
    """A message's content as flat text: a string, or the text parts joined."""
    if content is None:
        if not required:
            return ""
        raise bad(f"{param} is required", param, "missing_required_parameter")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part_index, part in enumerate(content):
            where = f"{param}[{part_index}]"
            if not isinstance(part, dict) or part.get("type") not in TEXT_PARTS:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad(f"{where}: only text parts are supported (got {kind!r})", where)
            if not isinstance(part.get("text"), str):
                raise bad(f"{where}.text must be a string", f"{where}.text", "invalid_type")
            texts.append(part["text"])
        return "".join(texts)
    raise bad(f"{param} must be a string or a list of text parts", param, "invalid_type")


def arguments_text(value: Any, param: str) -> str:
    """A tool call's ``arguments``: JSON text (an object is accepted and written as JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    raise bad(f"{param} must be a string of JSON", param, "invalid_type")


def _tool_calls(raw: Any, param: str) -> tuple[ToolCall, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise bad(f"{param} must be an array", param, "invalid_type")
    calls = []
    for index, call in enumerate(raw):
        where = f"{param}[{index}]"
        if not isinstance(call, dict):
            raise bad(f"{where} must be an object", where, "invalid_type")
        if call.get("type", "function") != "function":
            raise bad(f"{where}.type must be \"function\"", f"{where}.type")
        function = call.get("function")
        if not isinstance(function, dict):
            raise bad(f"{where}.function must be an object", f"{where}.function",
                      "invalid_type")
        call_id = string(call, "id", param=f"{where}.id", required=True)
        name = string(function, "name", param=f"{where}.function.name", required=True)
        assert call_id is not None and name is not None
        calls.append(ToolCall(id=call_id, name=name, arguments=arguments_text(
            function.get("arguments", "{}"), f"{where}.function.arguments")))
    return tuple(calls)


def parse_message(message: Any, param: str) -> ChatMessage:
    if not isinstance(message, dict):
        raise bad(f"{param} must be an object", param, "invalid_type")
    role = message.get("role")
    if role not in ROLES:
        raise bad(f"{param}.role must be one of {', '.join(ROLES)}", f"{param}.role")
    if role == "assistant":
        calls = _tool_calls(message.get("tool_calls"), f"{param}.tool_calls")
        text = text_content(message.get("content"), f"{param}.content", required=False)
        return ChatMessage(role="assistant", content=text, tool_calls=calls)
    text = text_content(message.get("content"), f"{param}.content", required=True)
    if role == "tool":
        call_id = string(message, "tool_call_id", param=f"{param}.tool_call_id",
                         required=True)
        return ChatMessage(role="tool", content=text, tool_call_id=call_id)
    return ChatMessage(role="system" if role == "developer" else role, content=text)


def parse_messages(raw: Any, param: str = "messages") -> tuple[ChatMessage, ...]:
    if raw is None:
        raise bad(f"{param} is required", param, "missing_required_parameter")
    if not isinstance(raw, list) or not raw:
        raise bad(f"{param} must be a non-empty array", param, "invalid_type")
    return tuple(parse_message(message, f"{param}[{index}]")
                 for index, message in enumerate(raw))
