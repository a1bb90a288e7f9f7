"""The float32 engine of the day issue 11 was filed, the baseline side of
``engine_speed.py --issue-day``.

Run by this project's interpreter on another copy of ``src/`` (the tree of commit
``engine_speed.ISSUE_DAY``, exported by ``git archive``): it reads ``{"src", "models_dir",
"prompts", "adapters", "max_tokens", "repeat"}`` as JSON on stdin (``adapters``: the
bench's four ``[key, path]`` pairs) and prints one JSON line, ``{"single": [...], "mixed":
[...], "arkor": "<where arkor was imported from>"}``:

- single: decode tokens/s of ``prompts[0]`` on the first adapter, as ``single_stream``;
- mixed: the 16 prompts at once over the base model and the four adapters, aggregate output
  tokens/s, as ``concurrent``.

Only the engine's public API of that day is used (``LocalEngine``, ``generate``, greedy
``SamplingParams`` with ``ignore_eos``), so the requests are the bench's own.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any


def main() -> None:
    spec = json.load(sys.stdin)
    sys.path.insert(0, spec["src"])
    import arkor
    from arkor.engine.base import (
        AdapterRef,
        ChatMessage,
        GenerationRequest,
        SamplingParams,
        TextDelta,
    )
    from arkor.engine.local import LocalEngine
    from arkor.engine.registry import EMBEDDED_MODEL_NAME, BaseModelRegistry

    origin = str(Path(arkor.__file__).resolve())
    if not origin.startswith(str(Path(spec["src"]).resolve())):
        raise SystemExit(f"arkor was imported from {origin}, not from {spec['src']}")
    adapters = [AdapterRef(key=key, path=Path(path)) for key, path in spec["adapters"]]
    targets: list[Any] = [None, *adapters]
    max_tokens: int = spec["max_tokens"]

    def request(prompt: str, adapter: Any, tokens: int) -> Any:
        return GenerationRequest(
            base_model=EMBEDDED_MODEL_NAME, messages=(ChatMessage("user", prompt),),
            sampling=SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True),
            adapter=adapter)

    async def single(engine: Any, req: Any) -> float:
        first = last = 0.0
        count = 0
        async for event in engine.generate(req):
            if isinstance(event, TextDelta):
                now = time.perf_counter()
                first = first or now
                last = now
            else:
                count = event.completion_tokens
        return (count - 1) / (last - first)

    async def concurrent(engine: Any, requests: list[Any]) -> float:
        async def one(req: Any) -> int:
            async for event in engine.generate(req):
                if not isinstance(event, TextDelta):
                    return int(event.completion_tokens)
            raise RuntimeError("stream ended without Finished")

        began = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one(r) for r in requests)))
        return tokens / (time.perf_counter() - began)

    async def measure() -> dict[str, Any]:
        prompts: list[str] = spec["prompts"]
        mixed = [request(p, targets[i % len(targets)], max_tokens)
                 for i, p in enumerate(prompts)]
        alone = request(prompts[0], adapters[0], max_tokens)
        engine = LocalEngine(BaseModelRegistry.with_embedded(),
                             models_dir=Path(spec["models_dir"]))
        figures: dict[str, Any] = {"single": [], "mixed": [], "arkor": origin}
        async with engine:
            await engine.load(EMBEDDED_MODEL_NAME)
            await concurrent(engine, [request(p, targets[i % len(targets)], 4)
                                      for i, p in enumerate(prompts)])  # warm up
            for _ in range(spec["repeat"]):
                figures["single"].append(await single(engine, alone))
                figures["mixed"].append(await concurrent(engine, mixed))
        return figures

    print(json.dumps(asyncio.run(measure())))


if __name__ == "__main__":
    main()
