"""The limits every JSON body obeys (HTTP behaviour: tests/edge/test_edge_wire.py and
tests/cloud/test_input_guard.py)."""

from __future__ import annotations

import pytest

from arkor.json_input import MAX_JSON_DEPTH, TOO_DEEP, JsonInputError, check, loads


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_depth_is_counted_from_the_body_itself() -> None:
    check(nested(MAX_JSON_DEPTH))
    check({"a": nested(MAX_JSON_DEPTH - 1)})
    for too_deep in (nested(MAX_JSON_DEPTH + 1), {"a": nested(MAX_JSON_DEPTH)}):
        with pytest.raises(JsonInputError, match=TOO_DEEP):
            check(too_deep)


def test_a_body_too_deep_to_parse_is_the_same_refusal() -> None:
    with pytest.raises(JsonInputError, match=TOO_DEEP):
        loads(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ValueError):
        loads(b"{nope")


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (rb'{"messages": [{"content": "a\ud800"}]}', "messages[0].content"),
        (rb'{"stop": ["ok", "\udfff"]}', "stop[1]"),
        (b'{"raw": "\xed\xa0\x80"}', "raw"),
        (rb'["\ud800"]', "[0]"),
        (rb'"\ud800"', None),
    ],
)
def test_a_lone_surrogate_is_refused_where_it_is(raw: bytes, where: str | None) -> None:
    with pytest.raises(JsonInputError) as caught:
        loads(raw)
    assert caught.value.where == where
    assert "\\ud8" in caught.value.message or "\\udf" in caught.value.message
    caught.value.message.encode("utf-8")  # the refusal itself is valid Unicode


def test_pairs_and_escaped_backslashes_are_fine() -> None:
    assert loads(rb'{"emoji": "\ud83d\ude00", "text": "\\ud800"}') == {
        "emoji": "\U0001f600", "text": "\\ud800"}
