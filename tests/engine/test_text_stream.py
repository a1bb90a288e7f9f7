"""Incremental detokenization and stop strings, on the embedded model's real tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from arkor.engine.local.detokenizer import IncrementalDetokenizer, StopStringFilter


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir: Path) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world! Ça va? Größe: 10 €.",
        "Emoji split across tokens: 🐉🍞 and 日本語のテキスト.",
        "  leading spaces and\nnew lines\n\n  indented",
    ],
)
def test_streamed_text_equals_decoding_everything(tokenizer: object, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    detokenizer = IncrementalDetokenizer(
        lambda window: tokenizer.decode(window, skip_special_tokens=True)
    )

    pieces = [detokenizer.push(token) for token in ids]
    pieces.append(detokenizer.flush())

    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True) == text
    assert not any("\ufffd" in piece for piece in pieces)


def test_multibyte_character_waits_until_complete(tokenizer: object) -> None:
    ids = tokenizer("🐉", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1, "the dragon should span several byte-level tokens"
    detokenizer = IncrementalDetokenizer(lambda window: tokenizer.decode(window))

    pieces = [detokenizer.push(token) for token in ids]

    assert pieces[:-1] == [""] * (len(ids) - 1)
    assert pieces[-1] == "🐉"


def feed_all(stops: tuple[str, ...], chunks: list[str]) -> tuple[str, bool]:
    filter_ = StopStringFilter(stops)
    out = []
    for chunk in chunks:
        text, stopped = filter_.feed(chunk)
        out.append(text)
        if stopped:
            return "".join(out), True
    return "".join(out) + filter_.flush(), False


def test_stop_string_spanning_chunks_is_cut() -> None:
    assert feed_all(("END",), ["abc E", "N", "D tail"]) == ("abc ", True)


def test_earliest_of_several_stops_wins() -> None:
    assert feed_all(("world", "lo"), ["hello world"]) == ("hel", True)


def test_partial_stop_is_held_back_then_released() -> None:
    filter_ = StopStringFilter(("STOP",))
    assert filter_.feed("go ST") == ("go ", False)
    assert filter_.feed("ill") == ("STill", False)


def test_text_without_stops_passes_through() -> None:
    assert feed_all((), ["a", "b"]) == ("ab", False)
    assert feed_all(("xyz",), ["x", "y"]) == ("xy", False)
