"""The float32 engine of the day issue 11 was filed, the baseline side of
``engine_speed.py --issue-day``.

Run by this project's interpreter on another copy of ``src/`` (the tree of commit
``engine_speed.ISSUE_DAY``, exported by ``git archive``): it reads ``{"src", "models_dir",
"prompts", "adapters", "max_tokens", "repeat"}`` as JSON on stdin (``adapters``: the
bench's four ``[key, path]`` pairs) and prints one JSON line, ``{"single": [...], "mixed":
[...], "arkor": "<where arkor was imported from>"}``:

- single: decode tokens/s of ``prompts[0]`` on the first adapter (``streams.single_stream``);
- mixed: the 16 prompts at once over the base model and the four adapters, aggregate output
  tokens/s (``streams.concurrent``).

Only the engine's public API of that day is used (``LocalEngine``, ``generate``, greedy
``SamplingParams`` with ``ignore_eos``), so the requests are the bench's own.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from streams import concurrent, single_stream


def main() -> None:
    spec = json.load(sys.stdin)
    sys.path.insert(0, spec["src"])
    import arkor
    from arkor.engine.base import (
        AdapterRef,
        ChatMessage,
        GenerationRequest,
        SamplingParams,
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
                figures["single"].append(await single_stream(engine, alone))
                figures["mixed"].append(await concurrent(engine, mixed))
        return figures

    print(json.dumps(asyncio.run(measure())))


if __name__ == "__main__":
    main()
