"""Decode rates of an engine's streams, shared by ``engine_speed.py`` and
``issue_day_runner.py``.

No ``arkor`` import: ``issue_day_runner.py`` measures another copy of the engine (an older
commit's ``src/``), whose events are told apart by their fields (a ``Finished`` has
``completion_tokens``, a ``TextDelta`` does not), which the engine has had from the start.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any


def finished(event: Any) -> bool:
    return hasattr(event, "completion_tokens")


async def single_stream(engine: Any, req: Any) -> float:
    """Decode tokens/s of one request alone: the tokens after the first over the time from
    the first text to the last."""
    first = last = 0.0
    count = 0
    async for event in engine.generate(req):
        if finished(event):
            count = event.completion_tokens
        else:
            now = time.perf_counter()
            first = first or now
            last = now
    return (count - 1) / (last - first)


async def concurrent(engine: Any, requests: list[Any]) -> float:
    """Aggregate output tokens/s of ``requests`` sent at once."""
    async def one(req: Any) -> int:
        async for event in engine.generate(req):
            if finished(event):
                return int(event.completion_tokens)
        raise RuntimeError("stream ended without Finished")

    began = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(r) for r in requests)))
    return tokens / (time.perf_counter() - began)
