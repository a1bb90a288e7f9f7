"""Turning a request into prompt token ids: a raw prompt, or chat messages (with tools).

- ``GenerationRequest.prompt`` set: the text is tokenized as is, special tokens (BOS) added
  as the tokenizer's own defaults say; no chat template.
- Otherwise the base model's chat template renders the messages with
  ``add_generation_prompt=True``. When the request has tools, or its messages carry tool
  calls or tool results:

  - a template that supports tools (its source mentions ``tools``) gets OpenAI-shaped
    messages (assistant ``tool_calls`` with parsed ``arguments``, tool messages with
    ``tool_call_id`` and the function's ``name``) and ``tools=[{"type": "function", ...}]``;
  - any other template gets the messages rewritten into the default format of
    :mod:`arkor.engine.tool_format` (plain system/user/assistant text).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arkor.engine.base import ChatMessage, GenerationRequest, ToolSpec
from arkor.engine.tool_format import call_arguments, default_format_messages, tool_schema


def template_supports_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template reads a ``tools`` variable."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("tool_use") or template.get("default")
    return isinstance(template, str) and "tools" in template


def uses_tools(request: GenerationRequest) -> bool:
    return bool(request.tools) or any(m.tool_calls or m.role == "tool" for m in request.messages)


def openai_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """Messages in the shape tool-aware chat templates expect (OpenAI's, arguments parsed)."""
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    out: list[dict[str, Any]] = []
    for message in messages:
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            item["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call_arguments(call.arguments)},
                }
                for call in message.tool_calls
            ]
        if message.role == "tool" and message.tool_call_id is not None:
            item["tool_call_id"] = message.tool_call_id
            if message.tool_call_id in names:
                item["name"] = names[message.tool_call_id]
        out.append(item)
    return out


def chat_template_inputs(
    tokenizer: Any, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], with_tools: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The conversation and ``tools`` argument to give ``apply_chat_template``."""
    if not with_tools:
        return [{"role": m.role, "content": m.content} for m in messages], None
    if template_supports_tools(tokenizer):
        return openai_messages(messages), [tool_schema(t) for t in tools] or None
    return list(default_format_messages(messages, tools)), None


def encode_request(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """The request's prompt token ids (see the module docstring)."""
    if request.prompt is not None:
        return list(tokenizer(request.prompt)["input_ids"])
    conversation, tools = chat_template_inputs(
        tokenizer, request.messages, request.tools, uses_tools(request)
    )
    options: dict[str, Any] = {"tools": tools} if tools else {}
    encoded = tokenizer.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=True, **options
    )
    return list(encoded["input_ids"])


def prompt_characters(request: GenerationRequest) -> int:
    """Characters of prompt text the request carries (a lower bound on what is tokenized)."""
    if request.prompt is not None:
        return len(request.prompt)
    return sum(len(m.content) for m in request.messages)
