"""The engine's torch work off the scheduler's thread (loading a base model, reading an
adapter's files) runs on threads that end with it: a thread kept alive after it ran torch
work keeps its OpenMP team, and on a small machine that slows every decode step of the
scheduler's thread (arkor.engine.local.threads)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

import arkor.engine.local.engine as engine_module
from arkor.engine.base import AdapterRef
from arkor.engine.local.threads import in_own_thread
from arkor.engine.registry import EMBEDDED_MODEL_NAME
from tests.engine.conftest import chat, collect, make_engine


def test_loading_and_adapter_reads_leave_no_thread_behind(
    models_dir: Path, embedded_model_dir: Path, adapter_a: AdapterRef,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran_on: dict[str, threading.Thread] = {}

    def recording(name: str, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ran_on[name] = threading.current_thread()
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(engine_module, "load_base_model",
                        recording("load", engine_module.load_base_model))
    monkeypatch.setattr(engine_module, "read_adapter",
                        recording("read", engine_module.read_adapter))
    engine = make_engine(models_dir)

    async def scenario() -> None:
        async with engine:
            await engine.load(EMBEDDED_MODEL_NAME)
            # The encoding thread and the scheduler's use their tokenizers at once: each has
            # a Rust tokenizer of its own (the encoder is a deep copy), encoding alike.
            loaded = engine._schedulers[EMBEDDED_MODEL_NAME].loaded
            assert loaded.encoder._tokenizer is not loaded.tokenizer._tokenizer
            assert (loaded.encoder("Die Katze schläft.")["input_ids"]
                    == loaded.tokenizer("Die Katze schläft.")["input_ids"])
            outcome = await collect(engine, chat("Hello!", adapter=adapter_a, max_tokens=2))
            assert outcome.finished.completion_tokens >= 1
            for name in ("load", "read"):
                thread = ran_on[name]
                assert thread is not threading.main_thread()
                thread.join(timeout=5)
                assert not thread.is_alive(), f"the {name} thread ({thread.name}) lives on"

    asyncio.run(scenario())


def test_in_own_thread_returns_raises_and_survives_a_cancelled_wait() -> None:
    async def scenario() -> None:
        assert await in_own_thread("t", lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(ZeroDivisionError):
            await in_own_thread("t", lambda: 1 / 0)
        release = threading.Event()
        done = threading.Event()

        def slow() -> int:
            release.wait(5)
            done.set()
            return 1

        waiting = asyncio.ensure_future(in_own_thread("t", slow))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        assert await asyncio.to_thread(done.wait, 5)
        await asyncio.sleep(0.05)  # its late result lands on a cancelled future: ignored

    asyncio.run(scenario())
