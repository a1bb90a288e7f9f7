"""LocalEngine decode speed per precision, as ratios against float32 measured in the same run.

Run: ``.venv/bin/python bench/engine_speed.py`` (about three minutes on two cores).

One engine per precision is loaded side by side; each repeat runs every precision in turn,
so load from other processes on the machine hits all of them alike, and the figures printed
are the medians of the repeats (``--repeat``, default 5). Greedy throughout, and every
request generates exactly ``--max-tokens`` tokens (no token is EOS). The adapters are rank-8
q_proj/v_proj LoRAs with small random weights (see ``engine_throughput.py``).

- single stream: one request with an adapter; decode tokens/s counts the tokens after the
  first over the time from the first token to the last;
- 16 concurrent: 16 requests over 4 adapters + the base model; aggregate output tokens/s.

llama.cpp is not a column yet (issue 11).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from engine_throughput import PROMPTS, make_adapters, request

from arkor.engine.base import AdapterRef, GenerationRequest, TextDelta
from arkor.engine.embedded import ensure_embedded_model
from arkor.engine.local import LocalEngine
from arkor.engine.registry import EMBEDDED_MODEL_NAME, BaseModelRegistry

PRECISIONS = ("float32", "bfloat16", "int8")


async def single_stream(engine: LocalEngine, req: GenerationRequest) -> float:
    """Decode tokens/s of one request alone."""
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


async def concurrent(engine: LocalEngine, requests: list[GenerationRequest]) -> float:
    async def one(req: GenerationRequest) -> int:
        async for event in engine.generate(req):
            if not isinstance(event, TextDelta):
                return event.completion_tokens
        raise RuntimeError("stream ended without Finished")

    began = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(r) for r in requests)))
    return tokens / (time.perf_counter() - began)


async def measure(
    models_dir: Path, precisions: list[str], adapters: list[AdapterRef], max_tokens: int,
    repeat: int,
) -> dict[str, dict[str, list[float]]]:
    targets: list[AdapterRef | None] = [None, *adapters]
    mixed = [request(p, targets[i % len(targets)], max_tokens) for i, p in enumerate(PROMPTS)]
    alone = request(PROMPTS[0], adapters[0], max_tokens)
    engines = {}
    for precision in precisions:
        engine = LocalEngine(BaseModelRegistry.with_embedded(), models_dir=models_dir,
                             precision=precision)
        await engine.load(EMBEDDED_MODEL_NAME)
        engine._schedulers[EMBEDDED_MODEL_NAME].loaded.eos_token_ids = frozenset()
        await concurrent(engine, [request(r.messages[0].content, r.adapter, 4) for r in mixed])
        engines[precision] = engine
    figures: dict[str, dict[str, list[float]]] = {p: {"single": [], "mixed": []}
                                                  for p in precisions}
    for _ in range(repeat):
        for precision, engine in engines.items():
            figures[precision]["single"].append(await single_stream(engine, alone))
            figures[precision]["mixed"].append(await concurrent(engine, mixed))
    for engine in engines.values():
        await engine.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path(".pytest_cache/d/arkor-models"))
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; medians printed")
    parser.add_argument("--precision", action="append", choices=PRECISIONS[1:],
                        help="precisions besides float32 (default: all)")
    args = parser.parse_args()
    precisions = ["float32", *(args.precision or PRECISIONS[1:])]
    base_dir = ensure_embedded_model(args.models_dir)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="arkor-bench-") as scratch:
        adapters = make_adapters(base_dir, Path(scratch), 4)
        figures = asyncio.run(
            measure(args.models_dir, precisions, adapters, args.max_tokens, args.repeat)
        )
    print(f"torch threads: {torch.get_num_threads()}, max_tokens {args.max_tokens}, median of "
          f"{args.repeat} runs; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    single_ref = statistics.median(figures["float32"]["single"])
    mixed_ref = statistics.median(figures["float32"]["mixed"])
    print("| precision | single stream + adapter, decode tok/s | vs float32 "
          "| 16 concurrent, 4 adapters + base, tok/s | vs float32 | runs (16 concurrent) |")
    print("|---|---|---|---|---|---|")
    for precision in precisions:
        single = statistics.median(figures[precision]["single"])
        mixed = statistics.median(figures[precision]["mixed"])
        runs = ", ".join(f"{v:.0f}" for v in figures[precision]["mixed"])
        print(f"| {precision} | {single:.1f} | {single / single_ref:.2f}x | {mixed:.1f} "
              f"| {mixed / mixed_ref:.2f}x | {runs} |")


if __name__ == "__main__":
    main()
