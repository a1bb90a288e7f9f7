"""The tool-call grammars accept exactly the outputs each ``tool_choice`` allows (checked with
llguidance and the embedded model's tokenizer, no generation)."""

from __future__ import annotations

from pathlib import Path

import llguidance
import pytest
from llguidance.hf import from_tokenizer
from transformers import AutoTokenizer

from arkor.edge import tools

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
ONE = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
OTHER = '<tool_call>{"name": "get_time", "arguments": {"zone": "CET"}}</tool_call>'


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir: Path) -> llguidance.LLTokenizer:
    return from_tokenizer(AutoTokenizer.from_pretrained(embedded_model_dir))


def accepts(tokenizer: llguidance.LLTokenizer, choice: object, text: str,
            parallel: bool = True) -> bool:
    offered = tools.parse_tools([WEATHER, TIME])
    body = {"tool_choice": choice, "parallel_tool_calls": parallel}
    constraint = tools.constraint(offered, tools.parse_tool_choice(body, offered), None)
    assert constraint is not None
    matcher = llguidance.LLMatcher(tokenizer, constraint.grammar)
    consumed = matcher.consume_tokens(tokenizer.tokenize_str(text))
    return consumed and matcher.is_accepting() and not matcher.is_error()


def test_a_named_choice_allows_exactly_one_call_of_that_function(tokenizer) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert accepts(tokenizer, named, ONE)
    assert not accepts(tokenizer, named, ONE + "\n" + ONE)  # no second call, parallel or not
    assert not accepts(tokenizer, named, OTHER)


def test_required_allows_several_calls_only_when_parallel(tokenizer) -> None:
    assert accepts(tokenizer, "required", ONE + "\n" + OTHER)
    assert accepts(tokenizer, "required", OTHER, parallel=False)
    assert not accepts(tokenizer, "required", ONE + "\n" + OTHER, parallel=False)
    assert not accepts(tokenizer, "required", "Sure, the weather is fine.")
