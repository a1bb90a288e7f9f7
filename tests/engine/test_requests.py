"""What one request sees: stop strings, limits, seeds, errors, overload and disconnects."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest

from arkor.engine.base import (
    AdapterLoadError,
    AdapterRef,
    EngineOverloaded,
    EngineUnavailable,
    GenerationRequest,
    PromptTooLong,
    SamplingParams,
    TextDelta,
    UnknownBaseModel,
)
from arkor.engine.local import LocalEngine
from arkor.engine.registry import EMBEDDED_MODEL_NAME
from tests.engine.conftest import Outcome, Reference, chat, close_engine, collect, make_engine

COLORS = "Name three primary colors."
LONG_ANSWER = "Write a long story about a dragon who learns to bake bread."


def run(coroutine):
    return asyncio.run(coroutine)


def test_stop_string_cuts_the_text_before_it(engine: LocalEngine, reference: Reference) -> None:
    full = reference.text(COLORS, None, 24)
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    cut = full.index(stop)

    outcome = run(collect(engine, chat(COLORS, max_tokens=24, stop=("#never#", stop))))

    assert outcome.text == full[:cut]
    assert outcome.finished.finish_reason == "stop"
    assert outcome.finished.completion_tokens < len(reference.tokens(COLORS, None, 24))


def test_max_tokens_ends_with_length(engine: LocalEngine, reference: Reference) -> None:
    outcome = run(collect(engine, chat(LONG_ANSWER, max_tokens=5)))

    assert outcome.finished.finish_reason == "length"
    assert outcome.finished.completion_tokens == 5
    assert outcome.text == reference.text(LONG_ANSWER, None, 5)
    assert outcome.finished.prompt_tokens == len(
        reference.tokenizer.apply_chat_template(
            [{"role": "user", "content": LONG_ANSWER}], add_generation_prompt=True, tokenize=True
        )["input_ids"]
    )


def test_deltas_are_streamed_piece_by_piece(engine: LocalEngine) -> None:
    outcome = run(collect(engine, chat(LONG_ANSWER, max_tokens=20)))

    assert len(outcome.deltas) > 5
    assert all(outcome.deltas) and "\ufffd" not in outcome.text


def test_a_seed_gives_the_same_sample_alone_or_in_a_crowd(engine: LocalEngine) -> None:
    def sampled(seed: int) -> GenerationRequest:
        return chat(LONG_ANSWER, max_tokens=16, temperature=1.0, top_p=0.95, seed=seed)

    async def scenario() -> tuple[Outcome, list[Outcome]]:
        alone = await collect(engine, sampled(7))
        crowd = await asyncio.gather(
            collect(engine, chat(COLORS, max_tokens=20)),
            collect(engine, sampled(7)),
            *(collect(engine, sampled(seed)) for seed in (1, 2, 3)),
        )
        return alone, list(crowd)

    alone, crowd = run(scenario())
    assert crowd[1].text == alone.text
    assert len({o.text for o in crowd[1:]}) > 1, "different seeds should sample differently"


def test_prompt_longer_than_the_context_is_refused_up_front(engine: LocalEngine) -> None:
    async def scenario() -> None:
        async for _ in engine.generate(chat("hello " * 9000)):
            raise AssertionError("no event may come before the error")

    with pytest.raises(PromptTooLong) as caught:
        run(scenario())
    assert caught.value.max_context == 8192
    assert caught.value.prompt_tokens > 8192


def test_unknown_base_model(engine: LocalEngine) -> None:
    request = GenerationRequest("no/such-model", chat("hi").messages, SamplingParams())

    async def scenario() -> None:
        async for _ in engine.generate(request):
            pass

    with pytest.raises(UnknownBaseModel):
        run(scenario())


def test_bad_adapter_fails_alone(
    engine: LocalEngine, reference: Reference, adapter_a: AdapterRef, tmp_path: Path
) -> None:
    missing = AdapterRef(key="job:missing:final", path=tmp_path / "nowhere")
    corrupt_dir = tmp_path / "corrupt"
    shutil.copytree(adapter_a.path, corrupt_dir)
    (corrupt_dir / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    corrupt = AdapterRef(key="job:corrupt:final", path=corrupt_dir)
    wrong_shape_dir = tmp_path / "wrong-shape"
    shutil.copytree(adapter_a.path, wrong_shape_dir)
    config = json.loads((wrong_shape_dir / "adapter_config.json").read_text())
    config["r"] = 4
    (wrong_shape_dir / "adapter_config.json").write_text(json.dumps(config))
    wrong_shape = AdapterRef(key="job:wrong-shape:final", path=wrong_shape_dir)

    async def scenario() -> list[object]:
        return await asyncio.gather(
            collect(engine, chat(COLORS, max_tokens=12)),
            collect(engine, chat(COLORS, adapter=missing)),
            collect(engine, chat(COLORS, adapter=corrupt)),
            collect(engine, chat(COLORS, adapter=wrong_shape)),
            collect(engine, chat(COLORS, adapter=adapter_a, max_tokens=12)),
            return_exceptions=True,
        )

    base, *bad, good = run(scenario())
    assert [type(e) for e in bad] == [AdapterLoadError] * 3
    assert [e.key for e in bad] == [missing.key, corrupt.key, wrong_shape.key]
    assert base.text == reference.text(COLORS, None, 12)
    assert good.text == reference.text(COLORS, adapter_a, 12)
    assert corrupt.key not in engine.loaded_adapters(EMBEDDED_MODEL_NAME)
    assert wrong_shape.key not in engine.loaded_adapters(EMBEDDED_MODEL_NAME)


def test_full_queue_fails_fast_with_overloaded(models_dir: Path) -> None:
    engine = make_engine(models_dir, max_batch_size=1, max_queue=2)

    async def scenario() -> EngineOverloaded:
        started = asyncio.Event()
        running = asyncio.create_task(collect(engine, chat(LONG_ANSWER, max_tokens=200), started))
        await started.wait()
        queued = [
            asyncio.create_task(collect(engine, chat(COLORS, max_tokens=4))) for _ in range(2)
        ]
        await asyncio.sleep(0.05)
        began = time.monotonic()
        with pytest.raises(EngineOverloaded) as caught:
            await collect(engine, chat(COLORS, max_tokens=4))
        assert time.monotonic() - began < 0.5
        running.cancel()
        finished = await asyncio.gather(*queued)
        assert all(o.finished.completion_tokens == 4 for o in finished)
        return caught.value

    try:
        overloaded = run(scenario())
    finally:
        close_engine(engine)
    assert overloaded.retry_after >= 1


def test_disconnect_frees_the_slot(models_dir: Path, reference: Reference) -> None:
    engine = make_engine(models_dir, max_batch_size=1)

    async def scenario() -> tuple[Outcome, Outcome, float, float]:
        stream = engine.generate(chat(LONG_ANSWER, max_tokens=500))
        await anext(stream)
        began = time.monotonic()
        pieces = [await anext(stream) for _ in range(4)]
        per_piece = (time.monotonic() - began) / 4
        assert all(isinstance(p, TextDelta) for p in pieces)
        await stream.aclose()
        began = time.monotonic()
        after_close = await collect(engine, chat(COLORS, max_tokens=8))
        elapsed = time.monotonic() - began

        started = asyncio.Event()
        task = asyncio.create_task(collect(engine, chat(LONG_ANSWER, max_tokens=500), started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after_cancel = await collect(engine, chat(COLORS, max_tokens=8))
        return after_close, after_cancel, elapsed, per_piece

    try:
        after_close, after_cancel, elapsed, per_piece = run(scenario())
    finally:
        close_engine(engine)
    # Finishing the 500-token request first would take hundreds of steps; the freed slot
    # serves the next request (one prefill and 8 steps) at once.
    assert elapsed < 60 * per_piece
    assert after_close.text == after_cancel.text == reference.text(COLORS, None, 8)


def test_a_failing_step_fails_its_requests_and_the_engine_recovers(
    models_dir: Path, reference: Reference
) -> None:
    engine = make_engine(models_dir)

    async def scenario() -> Outcome:
        await engine.load(EMBEDDED_MODEL_NAME)
        scheduler = engine._schedulers[EMBEDDED_MODEL_NAME]
        healthy_step = scheduler._decode_step

        def broken_step() -> None:
            if scheduler.running < 2:
                return healthy_step()
            scheduler._decode_step = healthy_step
            raise RuntimeError("simulated device failure")

        scheduler._decode_step = broken_step
        failures = await asyncio.gather(
            collect(engine, chat(COLORS, max_tokens=30)),
            collect(engine, chat(LONG_ANSWER, max_tokens=30)),
            return_exceptions=True,
        )
        assert [type(f) for f in failures] == [EngineUnavailable, EngineUnavailable]
        return await collect(engine, chat(COLORS, max_tokens=8))

    try:
        recovered = run(scenario())
    finally:
        close_engine(engine)
    assert recovered.text == reference.text(COLORS, None, 8)


def test_closed_engine_is_unavailable(models_dir: Path) -> None:
    engine = make_engine(models_dir)

    async def scenario() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(collect(engine, chat(LONG_ANSWER, max_tokens=300), started))
        await started.wait()
        await engine.close()
        with pytest.raises(EngineUnavailable):
            await task
        with pytest.raises(EngineUnavailable):
            await collect(engine, chat(COLORS))

    run(scenario())
