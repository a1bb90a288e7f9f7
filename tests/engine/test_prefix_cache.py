"""The prefix cache and chunked prefill: less work, the same tokens.

An engine with both (the default) is compared with one that has neither, token for token;
the counters show the work that was skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from arkor.engine.base import (
    AdapterRef,
    ChatMessage,
    EngineOverloaded,
    GenerationRequest,
    SamplingParams,
)
from arkor.engine.local import LocalEngine
from arkor.engine.local.prefix_cache import PrefixCache
from arkor.engine.local.scheduler import SliceBudget
from arkor.engine.registry import EMBEDDED_MODEL_NAME
from tests.engine.conftest import Reference, chat, close_engine, collect, make_engine

SYSTEM = "You are a support assistant for Arkor. Answer briefly and politely, in English."
QUESTIONS = ["How do I reset my password?", "Where is my invoice?", "Can I change my plan?"]


@pytest.fixture(scope="module")
def cached(models_dir: Path, embedded_model_dir: Path) -> Iterator[LocalEngine]:
    engine = make_engine(models_dir)
    yield engine
    close_engine(engine)


@pytest.fixture(scope="module")
def plain(models_dir: Path, embedded_model_dir: Path) -> Iterator[LocalEngine]:
    engine = make_engine(models_dir, prefix_cache_mb=0, chunked_prefill=False)
    yield engine
    close_engine(engine)


def conversation(*turns: str, adapter: AdapterRef | None = None,
                 max_tokens: int = 12) -> GenerationRequest:
    roles = ["user", "assistant"]
    messages = [ChatMessage("system", SYSTEM)] + [
        ChatMessage(roles[i % 2], text) for i, text in enumerate(turns)
    ]
    return GenerationRequest(
        base_model=EMBEDDED_MODEL_NAME,
        messages=tuple(messages),
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0),
        adapter=adapter,
    )


def texts(engine: LocalEngine, requests: list[GenerationRequest]) -> list[str]:
    async def scenario() -> list[str]:
        outcomes = await asyncio.gather(*(collect(engine, r) for r in requests))
        return [o.text for o in outcomes]

    return asyncio.run(scenario())


def prefix(engine: LocalEngine) -> PrefixCache:
    cache = engine.prefix_cache(EMBEDDED_MODEL_NAME)
    assert cache is not None
    return cache


# The cache itself.

def kv(tokens: int, value: float = 0.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.full((3, tokens, 4), value), torch.full((3, tokens, 4), value))] * 2


def test_the_longest_prefix_of_the_same_adapter_is_found() -> None:
    cache = PrefixCache(max_bytes=1 << 20)
    cache.store("base", [1, 2, 3, 4, 5], kv(5, 1.0))
    cache.store("base", [1, 2, 9], kv(3, 2.0))
    cache.store("other", [1, 2, 3, 4, 5, 6], kv(6, 3.0))
    hit = cache.lookup("base", [1, 2, 3, 4, 7, 8])
    assert hit is not None and hit.length == 4
    keys, _ = hit.layers[0]
    assert keys.shape == (3, 4, 4) and float(keys[0, 0, 0]) == 1.0
    assert cache.lookup("third", [1, 2, 3, 4, 7]) is None
    # At least one token is always left to compute: its logits are the answer.
    whole = cache.lookup("base", [1, 2, 3, 4, 5])
    assert whole is not None and whole.length == 4
    assert cache.lookup("base", [1, 2, 3], minimum=3) is None


def test_entries_are_evicted_by_bytes_and_replaced_by_their_extensions() -> None:
    one = sum(k.nbytes + v.nbytes for k, v in kv(4))
    cache = PrefixCache(max_bytes=2 * one)
    cache.store("base", [1, 2, 3, 4], kv(4))
    cache.store("base", [5, 6, 7, 8], kv(4))
    assert cache.lookup("base", [1, 2, 3, 4, 0]) is not None  # now the most recent
    cache.store("base", [9, 9, 9, 9], kv(4))
    assert len(cache) == 2 and cache.bytes <= 2 * one
    assert cache.lookup("base", [5, 6, 7, 8, 0]) is None  # least recently used went
    cache.store("base", [1, 2, 3, 4, 5, 6], kv(6))
    assert len(cache) == 1  # it covers [1, 2, 3, 4]; [9, 9, 9, 9] made room
    assert PrefixCache(0).enabled is False


def test_a_whole_prompt_comes_back_with_its_logits_and_keeps_them_when_extended() -> None:
    cache = PrefixCache(max_bytes=1 << 20)
    logits = torch.arange(10, dtype=torch.float32)
    cache.store("base", [1, 2, 3], kv(3, 1.0), logits=logits)
    hit = cache.lookup_whole("base", [1, 2, 3])
    assert hit is not None and hit.length == 3 and hit.logits is logits
    assert hit.layers[0][0].shape == (3, 3, 4)
    assert cache.lookup_whole("other", [1, 2, 3]) is None  # per adapter
    # Only looking: no counter, no recency changes.
    assert cache.holds_whole("base", [1, 2, 3]) and not cache.holds_whole("other", [1, 2, 3])
    assert not cache.holds_whole("base", [1, 2]) and cache.whole_hits == 1
    assert cache.stores == 1
    assert cache.lookup_whole("base", [1, 2]) is None  # no logits kept at that length
    assert cache.lookup_whole("base", [1, 2, 3, 4]) is None
    # The answer extends the prompt: the longer entry replaces it and keeps its logits.
    cache.store("base", [1, 2, 3, 7, 8], kv(5, 2.0))
    assert len(cache) == 1
    again = cache.lookup_whole("base", [1, 2, 3])
    assert again is not None and again.logits is logits
    assert again.layers[0][0].shape == (3, 3, 4) and float(again.layers[0][0][0, 0, 0]) == 2.0
    assert cache.whole_hits == 2
    assert cache.bytes == sum(k.nbytes + v.nbytes for k, v in kv(5)) + logits.nbytes


# Through the engine.

def test_a_repeated_prefix_is_reused_and_changes_no_token(
    cached: LocalEngine, plain: LocalEngine, reference: Reference, adapter_a: AdapterRef
) -> None:
    requests = [conversation(q) for q in QUESTIONS]
    requests.append(conversation(QUESTIONS[0], adapter=adapter_a))
    expected = texts(plain, requests)
    first = texts(cached, requests[:1])
    cache = prefix(cached)
    before = cache.tokens_reused
    # Together, sharing the system prompt with the first: each starts from the cache, with
    # cached parts of different lengths in one prefill (padding in the middle of rows).
    assert first + texts(cached, requests[1:]) == expected
    assert cache.tokens_reused - before >= 2 * 20
    # The adapter's row used no base-model entry: the same request again finds its own.
    again = cache.tokens_reused
    assert texts(cached, requests[-1:]) == expected[-1:]
    assert cache.tokens_reused - again > 20
    [alone] = texts(cached, [chat(QUESTIONS[1], max_tokens=12)])
    assert alone == reference.text(QUESTIONS[1], None, 12)


def test_a_prompt_seen_whole_needs_no_forward_for_its_first_token(
    cached: LocalEngine, plain: LocalEngine, adapter_a: AdapterRef
) -> None:
    requests = [conversation("What does a deployment cost?", max_tokens=10),
                conversation("What does a deployment cost?", adapter=adapter_a, max_tokens=10)]
    expected = texts(plain, requests)
    assert texts(cached, requests) == expected
    scheduler = cached._schedulers[EMBEDDED_MODEL_NAME]
    cache = prefix(cached)
    forwards: list[int] = []  # the columns of each forward pass, prefill or decode step

    def counting(run: Callable[..., Any]) -> Callable[..., Any]:
        def counted(names: list[str | None], **inputs: Any) -> Any:
            forwards.append(int(inputs["input_ids"].shape[1]))
            return run(names, **inputs)
        return counted

    scheduler.adapters.forward = counting(scheduler.adapters.forward)  # type: ignore[method-assign]
    scheduler.adapters.lean_forward = counting(scheduler.adapters.lean_forward)  # type: ignore[method-assign]
    try:
        whole = cache.whole_hits
        # Each again, alone and together: the same tokens, and every forward is a decode step
        # (one column), none a prefill; the adapter's prompt found its own entry.
        assert texts(cached, requests[:1]) == expected[:1]
        assert texts(cached, requests[1:]) == expected[1:]
        assert texts(cached, requests) == expected
        assert cache.whole_hits - whole == 4
        assert forwards and set(forwards) == {1}
        # A first token only: no forward at all.
        one = conversation("What does a deployment cost?", max_tokens=1)
        first = texts(plain, [one])
        forwards.clear()
        assert texts(cached, [one]) == first
        assert forwards == []
    finally:
        del scheduler.adapters.forward, scheduler.adapters.lean_forward


def test_clearing_the_cache_makes_the_next_request_compute_its_prompt(
    cached: LocalEngine, plain: LocalEngine
) -> None:
    """Cleared straight after an answer (its prompt stored in the step that sent its last
    token), the same prompt again finds nothing and is computed whole; then it is back."""
    one = conversation("Which regions can host a deployment?", max_tokens=1)
    [expected] = texts(plain, [one])
    # the engine loads its model with its first request (this test may be the module's first)
    assert texts(cached, [one]) == [expected]
    cache = prefix(cached)
    for _ in range(3):
        assert texts(cached, [one]) == [expected]  # stored (or found) by now
        cached.clear_prefix_cache(EMBEDDED_MODEL_NAME)
        hits, whole = cache.hits, cache.whole_hits
        assert texts(cached, [one]) == [expected]
        assert (cache.hits, cache.whole_hits) == (hits, whole)
    assert texts(cached, [one]) == [expected]
    assert cache.whole_hits == whole + 1
    plain.clear_prefix_cache("no-such-model")  # not loaded: nothing to clear


def test_the_next_turn_of_a_conversation_reuses_the_answer(
    cached: LocalEngine, plain: LocalEngine
) -> None:
    turn1 = conversation("Tell me about your refund policy.", max_tokens=24)
    [answer] = texts(cached, [turn1])
    assert texts(plain, [turn1]) == [answer]
    turn2 = conversation("Tell me about your refund policy.", answer, "And for annual plans?")
    cache = prefix(cached)
    before = cache.tokens_reused
    prompt1 = cached._schedulers[EMBEDDED_MODEL_NAME].loaded.encode(turn1)
    assert texts(cached, [turn2]) == texts(plain, [turn2])
    # More than the first prompt: the answer's tokens came from the cache too.
    assert cache.tokens_reused - before > len(prompt1) + 10


def test_a_long_prompt_goes_in_slices_joined_to_decode_steps(
    cached: LocalEngine, plain: LocalEngine
) -> None:
    long_text = " ".join(f"Line {i}: the parcel left the depot on time." for i in range(30))
    long_request = conversation(f"Summarise these lines:\n{long_text}", max_tokens=8)
    running = [conversation(q, max_tokens=32) for q in QUESTIONS[:2]]
    asyncio.run(cached.load(EMBEDDED_MODEL_NAME))
    scheduler: Any = cached._schedulers[EMBEDDED_MODEL_NAME]
    adapters = scheduler.adapters
    passes: list[tuple[int, int]] = []  # each joined pass: (running rows, slice tokens)
    real_passes, real_step = adapters.joined_passes, scheduler._decode_step
    real_slice = scheduler._prefill_slice
    steps_alone: list[int] = []
    alone: list[int] = []  # tokens prefilled in a pass of their own (once nothing else runs)

    def record_slice(group: Any, rows: Any, columns: int) -> Any:
        alone.append(min(columns, group.remaining) * group.size)
        return real_slice(group, rows, columns)

    def record_passes(parts: Any, wanted: Any) -> Any:
        passes.append((len(parts[0][0]), int(parts[1][1]["input_ids"].numel())))
        return real_passes(parts, wanted)

    def record_step() -> None:
        steps_alone.append(len(scheduler._rows))
        real_step()

    async def scenario() -> list[str]:
        started = asyncio.Event()
        tasks = [asyncio.create_task(collect(cached, r, started)) for r in running]
        await started.wait()
        passes.clear()
        alone.clear()
        tasks.append(asyncio.create_task(collect(cached, long_request)))
        return [o.text for o in await asyncio.gather(*tasks)]

    reused = prefix(cached).tokens_reused
    adapters.joined_passes, scheduler._decode_step = record_passes, record_step
    scheduler._prefill_slice = record_slice
    try:
        got = asyncio.run(scenario())
    finally:
        del adapters.joined_passes
        scheduler._decode_step, scheduler._prefill_slice = real_step, real_slice
    assert got == texts(plain, [*running, long_request])
    prompt = len(scheduler.loaded.encode(long_request))
    # The running rows kept decoding while the long prompt went in: in slices, each in the
    # same pass as a decode step of theirs, sized by the measured costs.
    assert len(passes) >= 3, passes
    assert all(rows >= 1 for rows, _ in passes), passes
    # What the running rows did not see go in (they may finish first) went in whole.
    fed = sum(tokens for _, tokens in passes) + sum(alone)
    assert fed + prefix(cached).tokens_reused - reused >= prompt, (passes, alone)
    assert max(tokens for _, tokens in passes) <= SliceBudget.MOST, passes
    assert steps_alone, "steps without a slice before and after"


def test_a_prompt_seen_whole_joins_while_a_long_prompt_goes_in(
    cached: LocalEngine, plain: LocalEngine, adapter_a: AdapterRef
) -> None:
    """Regression: a request whose prompt is whole in the prefix cache needs no forward pass
    for its first token, yet it waited in the queue until a long prompt going in by slices
    had joined (one prefill group at a time). Now it joins at once: its first token comes
    before the long prompt's, with the same text as ever."""
    long_text = " ".join(f"Line {i}: the crate was loaded at noon." for i in range(40))
    long_request = conversation(f"Summarise these lines:\n{long_text}", max_tokens=4)
    running = [conversation(f"{q} Please be brief.", max_tokens=64) for q in QUESTIONS[:2]]
    seen = [conversation("Is there a free plan?", max_tokens=6),
            conversation("Is there a free plan?", adapter=adapter_a, max_tokens=6)]
    expected = texts(plain, seen)
    assert texts(cached, seen) == expected  # now whole in the cache, with their logits
    scheduler: Any = cached._schedulers[EMBEDDED_MODEL_NAME]
    whole = prefix(cached).whole_hits
    # Slices of 8 tokens, so the long prompt goes in over ~50 turns on any machine (a fast
    # one sizes them to take it in one or two, and there would be no window to arrive in).
    scheduler._slices.tokens = lambda width=0, rows=0: 8

    async def scenario() -> tuple[Any, list[Any]]:
        started = asyncio.Event()
        tasks = [asyncio.create_task(collect(cached, r, started)) for r in running]
        await started.wait()
        long_task = asyncio.create_task(collect(cached, long_request))
        while scheduler._group is None:  # the long prompt is going in, slice by slice
            assert not long_task.done()
            await asyncio.sleep(0.001)
        again = await asyncio.gather(*(collect(cached, r) for r in seen))
        outcome = await long_task
        await asyncio.gather(*tasks)
        return outcome, again

    try:
        long_outcome, again = asyncio.run(scenario())
    finally:
        del scheduler._slices.tokens
    assert [o.text for o in again] == expected
    assert prefix(cached).whole_hits - whole == 2
    firsts = [o.first_delta_at for o in again]
    long_first = long_outcome.first_delta_at
    assert long_first is not None and all(t is not None and t < long_first for t in firsts), (
        firsts, long_first)
    assert scheduler.joining == 0 and scheduler._group is None


def test_a_slice_costs_about_one_decode_step() -> None:
    budget = SliceBudget()
    assert budget.tokens() == SliceBudget.LEAST  # nothing measured yet
    budget.stepped(0.040)
    budget.carried(0.080, 32)  # 40 ms more for 32 tokens: 1.25 ms a token
    assert budget.tokens() == 26  # 80 % of a 40 ms step: 32 ms, at 1.25 ms a token
    budget.carried(0.060, 10)  # 2 ms a token: a rise is followed at once
    assert budget.tokens() == 16
    budget.carried(0.010, 10)  # faster than a step without a slice: noise, not free tokens
    assert SliceBudget.LEAST <= budget.tokens() <= SliceBudget.MOST
    for _ in range(30):
        budget.carried(0.0401, 10)
    # Nearly free now, but no slice has been larger than 32 tokens: twice that at most
    assert budget.tokens() == 2 * 32
    for _ in range(6):  # 64, 128, ... each as cheap: doubling up to the most
        budget.carried(0.0401, budget.tokens())
    assert budget.tokens() == SliceBudget.MOST
    for _ in range(30):
        budget.carried(5.0, 10)
    assert budget.tokens() == SliceBudget.LEAST


def test_a_slice_measured_as_free_does_not_make_the_next_one_huge() -> None:
    """Regression: a first slice step no slower than the average decode step (its 28 tokens'
    cost lost in the steps' jitter: the steps of 8 rows on a 2-core AMD EPYC spread from 80
    to 167 ms) read as free tokens, and the next slice of a 1,379-token prompt was 1,024
    tokens: a 5.8 s stall of the 8 running streams, and of a request that was waiting behind
    it. Now a slice is at most twice the largest one measured."""
    budget = SliceBudget(block=4)
    budget.stepped(0.120)
    budget.carried(0.116, 28)
    assert budget.per_token == 0
    assert budget.tokens(1379, rows=8) == 2 * 28
    budget.carried(0.200, 56)  # 1.4 ms a token: the cost shows, the budget follows it
    assert budget.tokens(1379, rows=8) == 40  # half of a 120 ms step, a whole block


def test_a_long_prompt_goes_by_smaller_slices_that_fill_the_kernels_blocks() -> None:
    """A long prompt's slices take half a step, down to one token; with the packed kernels
    (rows in blocks of 4) a slice fills the pass's last block: a short prompt's up, a long
    one's down to a whole block, or up to the first."""
    long = SliceBudget.LONG + 1
    budget = SliceBudget()
    assert budget.tokens(long) == SliceBudget.LONG_LEAST  # nothing measured yet
    budget.stepped(0.040)
    budget.carried(0.080, 32)  # 1.25 ms a token
    assert budget.tokens(long) == 16  # half of a 40 ms step
    assert budget.tokens(SliceBudget.LONG) == 26  # not long: 80 %
    budget.carried(0.240, 10)  # 20 ms a token
    assert budget.tokens(long) == 1 and budget.tokens() == SliceBudget.LEAST

    blocks = SliceBudget(block=4)
    assert blocks.tokens(long, rows=8) == 4  # one token would cost a whole block anyway
    assert blocks.tokens(long, rows=7) == 1  # it fills the last block
    assert blocks.tokens(rows=7) == 9  # a short prompt's floor of 8, up to the block's end
    assert blocks.tokens(rows=8) == 8
    blocks.stepped(0.040)
    blocks.carried(0.080, 32)
    assert blocks.tokens(long, rows=8) == 16  # 16 rows of 8 + 16: whole blocks
    assert blocks.tokens(long, rows=7) == 13  # down to 20 rows, never past the budget
    assert blocks.tokens(rows=7) == 29  # up from 26 to 36 rows


def test_a_request_being_joined_holds_its_slot(models_dir: Path, embedded_model_dir: Path) -> None:
    """Regression: between a newcomer's first token and its joining the running batch (when
    its prompt goes to the prefix cache), its slot looked free, so with one slot and no queue
    a second request was queued instead of refused, and waited for the whole first answer."""
    engine = make_engine(models_dir, max_batch_size=1, max_queue=0)

    async def scenario() -> object:
        await engine.load(EMBEDDED_MODEL_NAME)
        scheduler: Any = engine._schedulers[EMBEDDED_MODEL_NAME]
        real_store = scheduler.prefix.store

        def slow_store(*args: Any, **kwargs: Any) -> None:
            time.sleep(1.0)  # widen the window the race needs
            real_store(*args, **kwargs)

        scheduler.prefix.store = slow_store
        started = asyncio.Event()
        first = asyncio.create_task(collect(engine, chat(QUESTIONS[0], max_tokens=24), started))
        await started.wait()
        second = await asyncio.gather(collect(engine, chat(QUESTIONS[1], max_tokens=2)),
                                      return_exceptions=True)
        await first
        return second[0]

    try:
        outcome = asyncio.run(scenario())
    finally:
        close_engine(engine)
    assert isinstance(outcome, EngineOverloaded), outcome
