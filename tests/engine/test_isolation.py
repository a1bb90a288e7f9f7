"""One request's numbers or size never fail or stall another's."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from arkor.engine.base import (
    AdapterLoadError,
    AdapterRef,
    EngineUnavailable,
    PromptTooLong,
    SamplingParams,
)
from arkor.engine.local import LocalEngine
from arkor.engine.local.sampling import NON_FINITE_MESSAGE, RowSampler, next_tokens
from arkor.engine.registry import EMBEDDED_MODEL_NAME
from tests.engine.conftest import Reference, chat, close_engine, collect, make_engine

COLORS = "Name three primary colors."
OTHERS = ("Say hello.", "Count to five.", "Name a fruit.")


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_tiny_temperature_decodes_greedily_and_fails_nobody(
    engine: LocalEngine, reference: Reference
) -> None:
    async def scenario() -> list[object]:
        return await asyncio.gather(
            collect(engine, chat(COLORS, max_tokens=12, temperature=1e-300, seed=7)),
            *(collect(engine, chat(p, max_tokens=12, temperature=0.7, seed=1)) for p in OTHERS),
            return_exceptions=True,
        )

    tiny, *others = run(scenario())
    assert not isinstance(tiny, BaseException), tiny
    assert tiny.text == reference.text(COLORS, None, 12)
    assert all(not isinstance(o, BaseException) and o.finished.completion_tokens == 12
               for o in others), others


def test_next_tokens_fails_only_the_row_whose_logits_are_not_finite() -> None:
    logits = torch.randn(3, 50)
    logits[1, 7] = float("nan")
    logits[2, :10] = float("-inf")  # a mask, not a failure
    device = torch.device("cpu")
    samplers = [RowSampler.for_params(SamplingParams(temperature=t, seed=3), device)
                for t in (0.0, 0.8, 0.8)]
    step = next_tokens(logits, samplers)
    assert step.failed == {1: NON_FINITE_MESSAGE}
    assert step.tokens[0] == int(logits[0].argmax())
    assert step.tokens[2] >= 10


def test_a_nan_or_positive_infinity_anywhere_in_a_row_fails_it() -> None:
    """Wherever it lies (the check reads each row's maximum, which a vectorised reduction
    computes lane by lane), beside masks or alone; -inf alone never fails a row."""
    device = torch.device("cpu")
    width = 49152
    for column in (0, 1, 15, 16, 17, 1000, width - 17, width - 2, width - 1):
        for bad in (float("nan"), float("inf")):
            logits = torch.randn(4, width)
            logits[1, column] = bad
            logits[2, : width // 2] = float("-inf")
            logits[2, column] = bad
            logits[3] = float("-inf")
            samplers = [RowSampler.for_params(SamplingParams(temperature=0.0), device)
                        for _ in range(4)]
            step = next_tokens(logits, samplers)
            assert step.failed == {1: NON_FINITE_MESSAGE, 2: NON_FINITE_MESSAGE}, (column, bad)
            assert step.tokens[0] == int(logits[0].argmax())
            assert step.tokens[1] == step.tokens[2] == 0  # failed rows' placeholder


def poisoned_copy(adapter: AdapterRef, where: Path, part: str) -> AdapterRef:
    """``adapter`` with every ``lora_<part>`` weight at 3e38: finite, so the files pass the
    loader's check. ``A``: ``x @ A`` overflows to infinity on any row it is computed for.
    ``B``: times the adapter's scaling (alpha 16 / r 8) it overflows once stacked."""
    shutil.copytree(adapter.path, where)
    tensors = load_file(str(where / "adapter_model.safetensors"))
    for name in [key for key in tensors if key.endswith(f"lora_{part}.weight")]:
        tensors[name] = torch.full_like(tensors[name], 3e38)
    save_file(tensors, str(where / "adapter_model.safetensors"))
    return AdapterRef(key=f"job:overflow-{part}:final", path=where)


@pytest.mark.parametrize("part", ["A", "B"])
def test_an_adapter_whose_numbers_overflow_fails_its_rows_alone(
    models_dir: Path, reference: Reference, adapter_a: AdapterRef, adapter_b: AdapterRef,
    tmp_path: Path, part: str,
) -> None:
    """Whatever an adapter does to its rows' numbers, the other rows of the same batch
    (stacked LoRA products share one matrix product) finish correctly: its prompt goes in
    as slices joined to the decode steps of a request already running, then decodes beside
    the others. One whose scaled weights cannot even be stacked is refused when it loads."""
    bad = poisoned_copy(adapter_b, tmp_path / "overflow", part)
    engine = make_engine(models_dir)

    async def scenario() -> list[object]:
        await engine.load(EMBEDDED_MODEL_NAME)
        started = asyncio.Event()
        # Already decoding when the poisoned rows come: their prompts join its steps.
        running = asyncio.create_task(
            collect(engine, chat(OTHERS[0], adapter=adapter_a, max_tokens=24), started))
        await started.wait()
        others = await asyncio.gather(
            collect(engine, chat(COLORS, adapter=bad, max_tokens=12)),
            collect(engine, chat(COLORS, adapter=bad, max_tokens=12, temperature=0.9)),
            collect(engine, chat(COLORS, max_tokens=12)),
            collect(engine, chat(COLORS, adapter=adapter_a, max_tokens=12)),
            collect(engine, chat(COLORS, max_tokens=12, temperature=0.8, seed=5)),
            return_exceptions=True,
        )
        return [*others, await running]

    try:
        greedy_bad, sampled_bad, base, good, sampled, first = run(scenario())
    finally:
        close_engine(engine)
    if part == "A":
        assert isinstance(greedy_bad, EngineUnavailable)
        assert isinstance(sampled_bad, EngineUnavailable)
        assert "non-finite" in str(greedy_bad)
    else:
        assert isinstance(greedy_bad, AdapterLoadError)
        assert isinstance(sampled_bad, AdapterLoadError)
        assert "overflow" in greedy_bad.message
    assert base.text == reference.text(COLORS, None, 12)
    assert good.text == reference.text(COLORS, adapter_a, 12)
    assert sampled.finished.completion_tokens == 12
    assert first.text == reference.text(OTHERS[0], adapter_a, 24)


def test_a_failing_prefill_fails_the_newcomers_only(
    models_dir: Path, reference: Reference
) -> None:
    engine = make_engine(models_dir)

    async def scenario() -> tuple[object, object]:
        await engine.load(EMBEDDED_MODEL_NAME)
        scheduler: Any = engine._schedulers[EMBEDDED_MODEL_NAME]
        started = asyncio.Event()
        running = asyncio.create_task(collect(engine, chat(COLORS, max_tokens=24), started))
        await started.wait()

        real_passes, real_step = scheduler.adapters.joined_passes, scheduler._decode_step

        def step_after_failure() -> None:
            del scheduler._decode_step
            [row] = scheduler._rows  # one row, no padding: a column per token fed
            columns.append((scheduler._batch.length,
                            len(row.ticket.prompt_ids) + len(row.generated) - 1))
            real_step()

        def broken(*args: Any) -> object:
            # The newcomer's slice fails: in a pass of its own (_prefill_slice), or in the
            # running rows' decode step's pass (joined_passes), after that pass has written
            # their cache: it must be rewound before their step is taken alone.
            del scheduler._prefill_slice, scheduler.adapters.joined_passes
            if len(args) == 2:
                real_passes(*args)
                scheduler._decode_step = step_after_failure
            raise RuntimeError("simulated failure while starting a request")

        scheduler._prefill_slice = scheduler.adapters.joined_passes = broken
        newcomer = await asyncio.gather(collect(engine, chat("Say hello.", max_tokens=4)),
                                        return_exceptions=True)
        return await running, newcomer[0]

    columns: list[tuple[int, int]] = []
    try:
        running, newcomer = run(scenario())
    finally:
        close_engine(engine)
    assert isinstance(newcomer, EngineUnavailable)
    assert running.text == reference.text(COLORS, None, 24)
    assert len(columns) == 1 and columns[0][0] == columns[0][1], columns


def test_a_prompt_that_cannot_fit_is_refused_without_tokenizing(
    engine: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        await engine.load(EMBEDDED_MODEL_NAME)
        loaded = engine._schedulers[EMBEDDED_MODEL_NAME].loaded

        def never(*_args: object) -> list[int]:
            raise AssertionError("a prompt that cannot fit was tokenized")

        monkeypatch.setattr(loaded, "encode", never)
        with pytest.raises(PromptTooLong) as caught:
            async for _ in engine.generate(chat("a" * 4_000_000)):
                pass
        assert "at least" in str(caught.value)

    run(scenario())


def test_tokenizing_a_long_prompt_leaves_the_event_loop_free(engine: LocalEngine) -> None:
    """A prompt just short of the refuse-unread bound is tokenized off the event loop."""

    async def scenario() -> tuple[float, float]:
        await engine.load(EMBEDDED_MODEL_NAME)
        loaded = engine._schedulers[EMBEDDED_MODEL_NAME].loaded
        words = "lorem ipsum dolor sit amet " * (loaded.max_context * loaded.max_token_chars // 28)
        began = time.monotonic()
        generation = asyncio.create_task(collect(engine, chat(words)))
        worst = 0.0
        while not generation.done():
            tick = time.monotonic()
            await asyncio.sleep(0.01)
            worst = max(worst, time.monotonic() - tick - 0.01)
        with pytest.raises(PromptTooLong):
            generation.result()
        return worst, time.monotonic() - began

    worst_lag, tokenizing = run(scenario())
    assert tokenizing > 0.1, "the prompt must take real tokenizing time for this to mean much"
    assert worst_lag < 0.1
