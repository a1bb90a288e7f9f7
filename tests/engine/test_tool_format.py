"""Tools in the prompt: the default text format, and templates that take ``tools=``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from arkor.engine.base import ChatMessage, GenerationRequest, SamplingParams, ToolCall, ToolSpec
from arkor.engine.local import LocalEngine
from arkor.engine.local.prompt import encode_request, template_supports_tools
from arkor.engine.registry import EMBEDDED_MODEL_NAME
from arkor.engine.tool_format import (
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    TOOL_RESPONSE_CLOSE,
    TOOL_RESPONSE_OPEN,
    default_format_messages,
    render_tool_call,
    render_tools_system,
)

WEATHER = ToolSpec(
    name="get_weather",
    description="The weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
CALL = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
CONVERSATION = (
    ChatMessage("system", "Be brief."),
    ChatMessage("user", "Weather in Paris?"),
    ChatMessage("assistant", "", tool_calls=(CALL,)),
    ChatMessage("tool", "18 C, sunny", tool_call_id="call_1"),
    ChatMessage("tool", "(second result)", tool_call_id="call_2"),
    ChatMessage("user", "Thanks!"),
)
TOOLS_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}CALL {{ c.function.name }} "
    "{{ c.function.arguments | tojson }}{% endfor %}{% else %}{{ m.content }}{% endif %}"
    "{% if m.role == 'tool' %} [{{ m.name }}]{% endif %}<|im_end|>\n{% endfor %}"
    "{% if tools %}TOOLS {{ tools | tojson }}\n{% endif %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_call_is_json_between_the_tags() -> None:
    text = render_tool_call(CALL)
    assert text.startswith(TOOL_CALL_OPEN + "\n") and text.endswith("\n" + TOOL_CALL_CLOSE)
    body = json.loads(text[len(TOOL_CALL_OPEN) : -len(TOOL_CALL_CLOSE)])
    assert body == {"name": "get_weather", "arguments": {"city": "Paris"}}


def test_the_system_block_lists_the_tools_and_teaches_the_format() -> None:
    block = render_tools_system([WEATHER])
    listed = block.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    assert json.loads(listed) == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": dict(WEATHER.parameters),
        },
    }
    assert f'{TOOL_CALL_OPEN}\n{{"name": <function-name>, "arguments": ' in block


def test_a_tool_conversation_in_the_default_format() -> None:
    messages = default_format_messages(CONVERSATION, [WEATHER])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "user"]
    assert messages[0]["content"].startswith("Be brief.\n\n# Tools")
    assert messages[2]["content"] == render_tool_call(CALL)
    assert messages[3]["content"] == (
        f"{TOOL_RESPONSE_OPEN}\n18 C, sunny\n{TOOL_RESPONSE_CLOSE}\n"
        f"{TOOL_RESPONSE_OPEN}\n(second result)\n{TOOL_RESPONSE_CLOSE}"
    )


def test_without_a_system_message_the_tool_block_becomes_one() -> None:
    messages = default_format_messages((ChatMessage("user", "hi"),), [WEATHER])
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("# Tools")


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


def request(messages: tuple[ChatMessage, ...], tools: tuple[ToolSpec, ...]) -> GenerationRequest:
    return GenerationRequest(EMBEDDED_MODEL_NAME, messages, SamplingParams(), tools=tools)


def test_a_template_without_tools_gets_the_default_format(tokenizer: Any) -> None:
    assert not template_supports_tools(tokenizer)
    text = tokenizer.decode(encode_request(tokenizer, request(CONVERSATION, (WEATHER,))))
    assert "<|im_start|>system\nBe brief.\n\n# Tools" in text
    assert f"<|im_start|>assistant\n{render_tool_call(CALL)}<|im_end|>" in text
    assert f"<|im_start|>user\n{TOOL_RESPONSE_OPEN}\n18 C, sunny" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_a_template_with_tools_gets_them_and_openai_shaped_messages(tokenizer: Any) -> None:
    original = tokenizer.chat_template
    tokenizer.chat_template = TOOLS_TEMPLATE
    try:
        assert template_supports_tools(tokenizer)
        text = tokenizer.decode(encode_request(tokenizer, request(CONVERSATION, (WEATHER,))))
    finally:
        tokenizer.chat_template = original
    assert 'CALL get_weather {"city": "Paris"}' in text
    assert "18 C, sunny [get_weather]" in text
    assert 'TOOLS [{"type": "function", "function": {"name": "get_weather"' in text


def test_the_engine_renders_tools_into_the_prompt(engine: LocalEngine) -> None:
    plain = request((ChatMessage("user", "Weather in Paris?"),), ())
    with_tools = request((ChatMessage("user", "Weather in Paris?"),), (WEATHER,))

    async def scenario() -> tuple[int, int]:
        return (
            await engine.count_prompt_tokens(plain),
            await engine.count_prompt_tokens(with_tools),
        )

    without, with_ = asyncio.run(scenario())
    assert with_ > without + 50
