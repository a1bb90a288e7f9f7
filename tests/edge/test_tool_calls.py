"""The tool-call parser: content and calls come out the same however the text is split, text
that might open a call is held back, and other layouts or broken calls degrade to content."""

from __future__ import annotations

import json

import pytest

from arkor.edge.tool_calls import (
    CallArguments,
    CallStarted,
    Content,
    ToolCallEvent,
    ToolCallParser,
    parse_completion,
)

CALL = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", '
        '"note": "a}b\\""}}\n</tool_call>')
TWO = (CALL + '\n<tool_call>{"name": "get_time", "arguments": {"zone": "CET"}}</tool_call>')


def feed_in_pieces(text: str, size: int) -> tuple[list[ToolCallEvent], ToolCallParser]:
    parser = ToolCallParser()
    events: list[ToolCallEvent] = []
    for start in range(0, len(text), size):
        events += parser.feed(text[start:start + size])
    return events + parser.finish(), parser


def summary(events: list[ToolCallEvent]) -> tuple[str, list[tuple[int, str]], dict[int, str]]:
    content = "".join(e.text for e in events if isinstance(e, Content))
    starts = [(e.index, e.name) for e in events if isinstance(e, CallStarted)]
    arguments: dict[int, str] = {}
    for event in events:
        if isinstance(event, CallArguments):
            arguments[event.index] = arguments.get(event.index, "") + event.fragment
    return content, starts, arguments


@pytest.mark.parametrize("size", [1, 2, 3, 5, 11, 1000])
def test_calls_come_out_the_same_however_the_text_is_split(size: int) -> None:
    events, parser = feed_in_pieces("Let me check. " + TWO, size)
    content, starts, arguments = summary(events)
    assert content == "Let me check. "
    assert starts == [(0, "get_weather"), (1, "get_time")]
    assert json.loads(arguments[0]) == {"city": "Paris", "note": 'a}b"'}
    assert json.loads(arguments[1]) == {"zone": "CET"}
    assert [(c.name, json.loads(c.arguments)) for c in parser.calls] == [
        ("get_weather", {"city": "Paris", "note": 'a}b"'}), ("get_time", {"zone": "CET"})]
    assert all(c.id.startswith("call_") and len(c.id) == 29 for c in parser.calls)
    assert parser.calls[0].id != parser.calls[1].id


def test_text_that_might_open_a_call_is_held_back() -> None:
    parser = ToolCallParser()
    assert parser.feed("Hello <tool") == [Content("Hello ")]
    assert parser.feed("_c") == []
    assert parser.feed("at") == [Content("<tool_cat")]
    assert parser.feed(" done <") == [Content(" done ")]
    assert parser.finish() == [Content("<")]


def test_arguments_stream_as_they_come() -> None:
    parser = ToolCallParser()
    head = parser.feed('<tool_call>{"name": "f", "arguments": {"a": ')
    assert [type(e) for e in head] == [CallStarted, CallArguments]
    assert parser.feed("12") == [CallArguments(0, "12")]
    assert parser.feed('}}</tool_call>') == [CallArguments(0, "}")]
    assert parser.calls[0].arguments == '{"a": 12}'


def test_other_layouts_are_read_at_the_closing_tag() -> None:
    parsed = parse_completion(
        '<tool_call>{"arguments": {"q": 1}, "name": "search"}</tool_call>')
    assert parsed.content is None
    assert [(c.name, json.loads(c.arguments)) for c in parsed.calls] == [("search", {"q": 1})]
    as_string = parse_completion(
        '<tool_call>{"name": "search", "arguments": "{\\"q\\": 1}"}</tool_call>')
    assert json.loads(as_string.calls[0].arguments) == {"q": 1}


def test_what_is_not_a_call_is_content() -> None:
    parsed = parse_completion("Use <tool_call>not json</tool_call> tags.")
    assert parsed.calls == [] and parsed.content == "Use <tool_call>not json</tool_call> tags."
    cut = parse_completion("Sure <tool_call>\n{\"na")
    assert cut.calls == [] and cut.content == "Sure <tool_call>\n{\"na"
    assert parse_completion("plain text").content == "plain text"


def test_a_call_cut_short_keeps_what_it_has() -> None:
    parsed = parse_completion('<tool_call>{"name": "f", "arguments": {"city": "Par')
    assert [c.name for c in parsed.calls] == ["f"]
    assert parsed.calls[0].arguments == '{"city": "Par'
