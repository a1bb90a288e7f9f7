"""Continuous batching gives the same greedy tokens as plain ``generate`` run one at a time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from arkor.engine.base import AdapterRef
from arkor.engine.local import LocalEngine
from arkor.engine.registry import EMBEDDED_MODEL_NAME
from tests.engine.conftest import Outcome, Reference, chat, close_engine, collect, make_engine

BASE_PROMPTS = ["What is the capital of France?", "Name three primary colors."]
TICKET_PROMPTS = [
    "I see two identical payments for the same order.",
    "The upload button spins forever and nothing happens.",
]
SENTENCE_PROMPTS = ["Die Katze schläft auf dem Sofa.", "La casa es muy grande y bonita."]


def _assert_matches(outcome: Outcome, reference: Reference, prompt: str, adapter, n: int) -> None:
    expected = reference.tokens(prompt, adapter, n)
    assert outcome.text == reference.decode(expected), (prompt, adapter)
    assert outcome.finished.completion_tokens == len(expected)
    assert outcome.finished.finish_reason == ("length" if expected[-1] != 2 else "stop")


def test_mixed_adapters_joining_at_different_times_match_generate(
    engine: LocalEngine, reference: Reference, adapter_a: AdapterRef, adapter_b: AdapterRef
) -> None:
    waves = [
        [
            (BASE_PROMPTS[0], None, 12),
            (TICKET_PROMPTS[0], adapter_a, 12),
            (SENTENCE_PROMPTS[0], adapter_b, 12),
            (TICKET_PROMPTS[1], None, 20),
        ],
        [
            (BASE_PROMPTS[1], None, 16),
            (TICKET_PROMPTS[1], adapter_a, 12),
            (TICKET_PROMPTS[0], adapter_b, 12),
        ],
        [(SENTENCE_PROMPTS[1], adapter_b, 12), (SENTENCE_PROMPTS[1], None, 8)],
    ]

    async def scenario() -> list[list[tuple[Outcome, float]]]:
        results = []
        for wave in waves:
            launched = time.monotonic()
            started = asyncio.Event()
            tasks = [
                asyncio.create_task(collect(engine, chat(p, adapter=a, max_tokens=n), started))
                for p, a, n in wave
            ]
            results.append((launched, tasks))
            # The next wave arrives while this one is decoding.
            await started.wait()
            await asyncio.sleep(0.1)
        return [[(await t, launched) for t in tasks] for launched, tasks in results]

    results = asyncio.run(scenario())
    for wave, outcomes in zip(waves, results, strict=True):
        for (prompt, adapter, n), (outcome, _) in zip(wave, outcomes, strict=True):
            _assert_matches(outcome, reference, prompt, adapter, n)
    last_of_first_wave = max(o.finished_at for o, _ in results[0])
    second_wave_launch = results[1][0][1]
    assert last_of_first_wave > second_wave_launch, "waves did not overlap"

    # The adapters really change the answers.
    base_ticket = reference.text(TICKET_PROMPTS[1], None, 20)
    labelled = results[1][1][0].text
    assert labelled.startswith("LABEL:") and not base_ticket.startswith("LABEL:")
    assert results[0][2][0].text.startswith("LANG:")


def test_a_short_request_leaves_while_a_long_one_continues(
    engine: LocalEngine, reference: Reference, adapter_a: AdapterRef
) -> None:
    async def scenario() -> tuple[Outcome, Outcome]:
        long = asyncio.create_task(collect(engine, chat(BASE_PROMPTS[1], max_tokens=40)))
        short = asyncio.create_task(
            collect(engine, chat(TICKET_PROMPTS[0], adapter=adapter_a, max_tokens=3))
        )
        return await long, await short

    long, short = asyncio.run(scenario())
    assert short.finished.finish_reason == "length"
    assert short.finished_at < long.finished_at
    _assert_matches(short, reference, TICKET_PROMPTS[0], adapter_a, 3)
    _assert_matches(long, reference, BASE_PROMPTS[1], None, 40)


def test_lru_of_one_adapter_still_gives_each_adapter_its_own_output(
    models_dir: Path, reference: Reference, adapter_a: AdapterRef, adapter_b: AdapterRef
) -> None:
    engine = make_engine(models_dir, max_loaded_adapters=1)
    plan = [
        (TICKET_PROMPTS[0], adapter_a),
        (SENTENCE_PROMPTS[0], adapter_b),
        (TICKET_PROMPTS[1], adapter_a),
        (BASE_PROMPTS[0], None),
        (SENTENCE_PROMPTS[1], adapter_b),
    ]

    async def scenario() -> list[Outcome]:
        # All at once: B must wait until no running row pins A, and so on.
        together = await asyncio.gather(
            *(collect(engine, chat(p, adapter=a, max_tokens=10)) for p, a in plan)
        )
        assert len(engine.loaded_adapters(EMBEDDED_MODEL_NAME)) == 1
        # One after another: each switch evicts the other adapter.
        for prompt, adapter in plan:
            alone = await collect(engine, chat(prompt, adapter=adapter, max_tokens=10))
            assert alone.text == together[plan.index((prompt, adapter))].text
            if adapter is not None:
                assert engine.loaded_adapters(EMBEDDED_MODEL_NAME) == [adapter.key]
        return together

    try:
        outcomes = asyncio.run(scenario())
    finally:
        close_engine(engine)
    for (prompt, adapter), outcome in zip(plan, outcomes, strict=True):
        _assert_matches(outcome, reference, prompt, adapter, 10)
