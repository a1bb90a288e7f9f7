"""The default tool-calling text format, for base models whose chat template has no tools.

A model that may call tools is taught, in a system block, to answer with one or more calls,
each a JSON object between two tags (the Hermes/Qwen convention)::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

A tool's result goes back to the model as a user message wrapped in
:data:`TOOL_RESPONSE_OPEN` / :data:`TOOL_RESPONSE_CLOSE` (consecutive results share one
message), so any template that knows ``system``, ``user`` and ``assistant`` can render a
tool conversation.

The edge parses completions with :data:`TOOL_CALL_OPEN` / :data:`TOOL_CALL_CLOSE` and builds
its structural-tag grammar from them; the engine renders prompts with
:func:`default_format_messages`. Nothing here imports torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from arkor.engine.base import ChatMessage, ToolCall, ToolSpec

TOOL_CALL_OPEN = "<tool_call>"
"""Opens one call; the body is ``{"name": ..., "arguments": {...}}`` (JSON)."""

TOOL_CALL_CLOSE = "</tool_call>"
"""Closes one call."""

TOOL_RESPONSE_OPEN = "<tool_response>"
"""Opens a tool's result, as rendered into the prompt."""

TOOL_RESPONSE_CLOSE = "</tool_response>"
"""Closes a tool's result."""

TOOLS_OPEN = "<tools>"
TOOLS_CLOSE = "</tools>"

TOOLS_PREAMBLE = (
    "# Tools\n\n"
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:"
)
TOOLS_INSTRUCTIONS = (
    "For each function call, return a json object with function name and arguments within "
    f"{TOOL_CALL_OPEN}{TOOL_CALL_CLOSE} XML tags:\n"
    f'{TOOL_CALL_OPEN}\n{{"name": <function-name>, "arguments": <args-json-object>}}\n'
    f"{TOOL_CALL_CLOSE}"
)


def tool_schema(tool: ToolSpec) -> dict[str, Any]:
    """The OpenAI shape of a tool (``{"type": "function", "function": {...}}``)."""
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = dict(tool.parameters) or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def render_tools_system(tools: Sequence[ToolSpec]) -> str:
    """The system block that lists ``tools`` and teaches the call format."""
    listed = "\n".join(json.dumps(tool_schema(tool), ensure_ascii=False) for tool in tools)
    return f"{TOOLS_PREAMBLE}\n{TOOLS_OPEN}\n{listed}\n{TOOLS_CLOSE}\n\n{TOOLS_INSTRUCTIONS}"


def call_arguments(arguments: str) -> Any:
    """A call's ``arguments`` JSON text as a value; text that is not JSON stays a string."""
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def render_tool_call(call: ToolCall) -> str:
    """One call as the model is taught to write it."""
    body = {"name": call.name, "arguments": call_arguments(call.arguments)}
    return f"{TOOL_CALL_OPEN}\n{json.dumps(body, ensure_ascii=False)}\n{TOOL_CALL_CLOSE}"


def render_assistant(content: str, calls: Sequence[ToolCall]) -> str:
    """An assistant message's text: its content, then each call on its own lines."""
    parts = [content] if content else []
    parts.extend(render_tool_call(call) for call in calls)
    return "\n".join(parts)


def render_tool_results(results: Sequence[str]) -> str:
    """One or more consecutive tool results as the text of one user message."""
    return "\n".join(f"{TOOL_RESPONSE_OPEN}\n{text}\n{TOOL_RESPONSE_CLOSE}" for text in results)


def default_format_messages(
    messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]
) -> list[dict[str, str]]:
    """``messages`` as plain ``{"role", "content"}`` dicts in the default format.

    The tool block is appended to the first system message (or becomes one); assistant calls
    become text; each run of ``tool`` messages becomes one ``user`` message.
    """
    out: list[dict[str, str]] = []
    pending_results: list[str] = []

    def flush_results() -> None:
        if pending_results:
            out.append({"role": "user", "content": render_tool_results(pending_results)})
            pending_results.clear()

    for message in messages:
        if message.role == "tool":
            pending_results.append(message.content)
            continue
        flush_results()
        if message.role == "assistant" and message.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": render_assistant(message.content, message.tool_calls),
                }
            )
        else:
            out.append({"role": message.role, "content": message.content})
    flush_results()
    if tools:
        block = render_tools_system(tools)
        if out and out[0]["role"] == "system":
            system = out[0]["content"]
            out[0] = {"role": "system", "content": f"{system}\n\n{block}" if system else block}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out
