"""One server process of the rate-limit tests (``tests/edge/test_rate_limits_shared.py``):
``python -m tests.edge.limited_server PORT``, with its settings read from the environment as
``arkor cloud serve`` reads them (``ARKOR_DATABASE_URL``, ``ARKOR_REDIS_URL``,
``ARKOR_RATE_LIMIT_WINDOW_S``, ...), and the scripted engine in place of the model: a
completion of the prompt ``slow`` takes ``SLOW_PAUSE_S`` before each of its two tokens."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import uvicorn

from arkor.cloud.settings import Settings
from arkor.engine.base import Finished, GenerationEvent, GenerationRequest, TextDelta
from arkor.server import create_app
from tests.doubles.engine import ScriptedEngine

SLOW = "slow"
SLOW_PAUSE_S = 0.6


class PacedEngine(ScriptedEngine):
    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        if request.prompt != SLOW:
            async for event in super().generate(request):
                yield event
            return
        for delta in ("slow", " answer"):
            await asyncio.sleep(SLOW_PAUSE_S)
            yield TextDelta(delta)
        yield Finished("stop", prompt_tokens=1, completion_tokens=2)


if __name__ == "__main__":
    uvicorn.run(create_app(Settings.from_env(), engine=PacedEngine()), host="127.0.0.1",
                port=int(sys.argv[1]), log_level="warning")
