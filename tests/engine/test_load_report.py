"""``LocalEngine.load_report``, what /metrics reads: nothing before a base model is loaded;
then its running rows, its queue, and its adapters attached and evicted, on the real model."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest

from arkor.engine.base import AdapterRef
from arkor.engine.local.engine import BaseModelLoad
from arkor.engine.registry import EMBEDDED_MODEL_NAME
from tests.engine.conftest import ask, chat, close_engine, collect, make_engine


def test_the_load_report_counts_rows_and_adapter_churn(
    models_dir: Path, embedded_model_dir: Path, adapter_a: AdapterRef, adapter_b: AdapterRef
) -> None:
    engine = make_engine(models_dir, max_loaded_adapters=1, max_batch_size=1)
    assert engine.load_report() == {}

    # The first request cannot end before it is cancelled (no EOS for 400 tokens, ~12 s in
    # float32). With 48 tokens, once in CI, it had already left the batch when the second
    # was first seen waiting (running 0, waiting 1).
    counting = ask("Count to fifty.", max_tokens=400, min_tokens=400)

    async def scenario() -> tuple[BaseModelLoad, BaseModelLoad]:
        started = asyncio.Event()
        long = asyncio.create_task(collect(engine, counting, started))
        await started.wait()
        waiting = asyncio.create_task(collect(engine, chat("Hi", max_tokens=2)))
        for _ in range(2000):  # one batch slot: the second waits while the first decodes
            if engine.load_report()[EMBEDDED_MODEL_NAME].waiting:
                break
            await asyncio.sleep(0.005)
        busy = engine.load_report()[EMBEDDED_MODEL_NAME]
        long.cancel()  # its row leaves at the next step; the second then runs
        with contextlib.suppress(asyncio.CancelledError):
            await long
        await waiting
        for adapter in (adapter_a, adapter_b, adapter_a):  # one slot: each switch evicts
            await collect(engine, chat("Hi", adapter=adapter, max_tokens=2))
        for _ in range(200):  # the last row leaves the batch just after its answer is sent
            if engine.load_report()[EMBEDDED_MODEL_NAME].running == 0:
                break
            await asyncio.sleep(0.01)
        return busy, engine.load_report()[EMBEDDED_MODEL_NAME]

    try:
        busy, after = asyncio.run(scenario())
    finally:
        close_engine(engine)
    assert (busy.running, busy.waiting) == (1, 1)
    assert after == BaseModelLoad(running=0, waiting=0, adapters_loaded=1, adapter_loads=3,
                                  adapter_evictions=2, precision="float32")


def test_a_base_model_load_says_its_precision(models_dir: Path, embedded_model_dir: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """What ``auto`` came to on this machine is in the log (and on /metrics, from the load
    report above): the suite's ``auto`` is float32 (tests/conftest.py)."""
    engine = make_engine(models_dir)
    try:
        with caplog.at_level(logging.INFO, logger="arkor.engine.local.loader"):
            asyncio.run(engine.load(EMBEDDED_MODEL_NAME))
    finally:
        close_engine(engine)
    assert f"base model {EMBEDDED_MODEL_NAME}: precision float32 (setting auto) on cpu" in (
        caplog.text)
