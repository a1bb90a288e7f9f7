"""Completion logprobs, raw prompts and prompt logprobs."""

from __future__ import annotations

import asyncio

import pytest

from arkor.engine.base import AdapterRef, TokenLogprob
from arkor.engine.local import LocalEngine
from arkor.engine.local.logprobs import TokenTexts
from tests.engine.conftest import Outcome, Reference, ask, collect

STORY = "Write a long story about a dragon who learns to bake bread."
RAW = "The capital of France is Paris. The capital of Germany is"


def run(coroutine):
    return asyncio.run(coroutine)


def chat_ids(reference: Reference, prompt: str) -> list[int]:
    return list(
        reference.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
    )


def test_logprobs_come_with_their_tokens_and_match_the_model(
    engine: LocalEngine, reference: Reference
) -> None:
    outcome = run(collect(engine, ask(STORY, max_tokens=12, logprobs=3)))

    entries = outcome.logprobs
    expected = reference.tokens(STORY, None, 12)
    assert [e.token_id for e in entries] == expected
    assert sum(outcome.logprobs_per_delta) == 12
    assert "".join(e.token for e in entries) == outcome.text
    own = reference.log_softmax(chat_ids(reference, STORY) + expected, None)
    start = len(chat_ids(reference, STORY)) - 1
    for i, entry in enumerate(entries):
        assert len(entry.top) == 3
        assert entry.top[0].token_id == entry.token_id  # greedy: the chosen one is the top
        assert entry.logprob == pytest.approx(float(own[start + i, entry.token_id]), abs=1e-4)
        assert [t.logprob for t in entry.top] == sorted(
            (t.logprob for t in entry.top), reverse=True
        )


def test_logprobs_zero_gives_the_chosen_token_only(engine: LocalEngine) -> None:
    outcome = run(collect(engine, ask(STORY, max_tokens=5, logprobs=0, temperature=0.8, seed=2)))
    assert len(outcome.logprobs) == 5
    assert all(e.top == () and e.logprob <= 0 for e in outcome.logprobs)


def test_logprobs_reflect_the_bias_before_temperature(engine: LocalEngine) -> None:
    biased = ((35, 100.0),)
    outcome = run(collect(engine, ask(STORY, max_tokens=3, logit_bias=biased, logprobs=1)))
    assert all(e.token_id == 35 and e.logprob > -1e-3 for e in outcome.logprobs)


def test_split_characters_are_written_as_bytes() -> None:
    pieces = {1: b"\xf0\x9f", 2: b" hello", 3: b"<|im_end|>"}
    texts = TokenTexts(lambda ids: pieces[ids[0]])
    assert texts(1) == "bytes:\\xf0\\x9f"
    assert texts(2) == " hello"
    assert texts(3) == "<|im_end|>"


def test_a_raw_prompt_is_tokenized_as_is_and_continued(
    engine: LocalEngine, reference: Reference
) -> None:
    ids = list(reference.tokenizer(RAW)["input_ids"])
    greedy: list[int] = []
    for _ in range(6):
        greedy.append(int(reference.log_softmax(ids + greedy, None)[-1].argmax()))

    outcome = run(collect(engine, ask("ignored", raw=RAW, max_tokens=6)))

    assert outcome.finished.prompt_tokens == len(ids)
    assert outcome.text == reference.decode(greedy)


@pytest.mark.parametrize("with_adapter", [False, True])
def test_prompt_logprobs_equal_the_models_own(
    engine: LocalEngine, reference: Reference, adapter_a: AdapterRef, with_adapter: bool
) -> None:
    adapter = adapter_a if with_adapter else None
    ids = list(reference.tokenizer(RAW)["input_ids"])

    async def scenario() -> list[Outcome]:
        return await asyncio.gather(
            collect(engine, ask("x", raw=RAW, adapter=adapter, max_tokens=0, prompt_logprobs=2)),
            collect(engine, ask("x", raw=RAW, adapter=adapter, max_tokens=3, prompt_logprobs=0)),
            collect(engine, ask(STORY, max_tokens=8)),  # a neighbour in the same prefill
        )

    only_prompt, with_tokens, _ = run(scenario())
    assert only_prompt.text == "" and only_prompt.deltas == []
    assert only_prompt.finished.completion_tokens == 0
    assert only_prompt.finished.finish_reason == "length"
    assert with_tokens.finished.completion_tokens == 3
    own = reference.log_softmax(ids, adapter)
    for outcome, top in ((only_prompt, 2), (with_tokens, 0)):
        entries = outcome.finished.prompt_logprobs
        assert entries is not None and len(entries) == len(ids) and entries[0] is None
        for position, entry in enumerate(entries[1:], start=1):
            assert isinstance(entry, TokenLogprob)
            assert entry.token_id == ids[position]
            assert entry.logprob == pytest.approx(float(own[position - 1, ids[position]]), abs=1e-4)
            assert len(entry.top) == top
            best = own[position - 1].topk(top)
            assert [t.logprob for t in entry.top] == pytest.approx(best.values.tolist(), abs=1e-4)


def test_max_tokens_zero_without_prompt_logprobs_still_answers_at_once(
    engine: LocalEngine,
) -> None:
    outcome = run(collect(engine, ask("x", raw=RAW, max_tokens=0)))
    assert outcome.finished.completion_tokens == 0
    assert outcome.finished.prompt_logprobs is None
    assert outcome.finished.prompt_tokens > 0
