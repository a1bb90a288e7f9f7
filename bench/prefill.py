"""Prefix cache and chunked prefill, against the same engine without them, in one run.

Run: ``.venv/bin/python bench/prefill.py`` (about five minutes on two cores).

Two engines: the default one (prefix cache and chunked prefill on) and one with
``prefix_cache_mb=0, chunked_prefill=False`` (the engine before them); each repeat loads and
runs both in turn, one alive at a time, and the medians are printed. Greedy throughout.

1. Time to first token of a 1-token request whose 75-token prompt was seen before, on the
   base model and on an adapter; and of a new question after a shared ~60-token system
   prompt. TTFT is from ``generate`` to its first event, in-process (no HTTP).
   The base request of 1. once more, sent 0.3 s after a ~1,340-token prompt arrived while
   8 other rows decode: its prompt is whole in the cache, but the long one is going in.
2. Stalls: 8 rows decode 64 tokens each; after their 8th token a ~1,340-token prompt
   arrives. The worst gap between two tokens of any running row while it goes in, against
   the median gap (one decode step), and the long prompt's own time to first token. Beside
   them, what tells a slice's cost from the machine's jitter: the median gap while it goes
   in (a typical step that carries a slice), and the worst gap of the same rows before it
   arrived (decode steps alone, every row started: no prompt going in). Gaps are between
   tokens: a delta that carries two tokens (text held back by the detokenizer, half of a
   multi-byte character) does not count as one late step (the rows ask for their tokens'
   logprobs, which say how many tokens each delta has).
3. Peak RSS (``heap.peak_rss_mib``: the child's own, not the bench's) of a process that
   has served the base model and 4 adapters at 16 concurrent plus the long prompt, per
   engine configuration, each in a fresh process.

The bench's process and its children freeze what their engines keep, as a server process
does (``arkor.heap.enable``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from engine_throughput import PROMPTS, make_adapters

from arkor import heap
from arkor.engine.base import (
    AdapterRef,
    ChatMessage,
    GenerationRequest,
    SamplingParams,
    TextDelta,
)
from arkor.engine.embedded import ensure_embedded_model
from arkor.engine.local import LocalEngine
from arkor.engine.local.quantize import resolve_on
from arkor.engine.precision import PRECISIONS
from arkor.engine.registry import EMBEDDED_MODEL_NAME, BaseModelRegistry

SYSTEM = (
    "You are the support assistant of a small company that sells accounting software. "
    "Answer in two sentences at most, be polite, never invent prices, and point the "
    "customer to the billing page for anything about invoices."
)
REPEATED = "My invoice for March shows a charge twice. What should I do?"
QUESTIONS = [
    "How do I export my data?", "Can I add a second user?", "Where do I change my address?",
    "Is there a mobile app?", "How do I cancel my plan?", "Why was my card declined?",
    "Can I get a receipt?", "How do I reset my password?", "Do you support euros?",
]
LONG = " ".join(
    f"Entry {i}: the parcel left the depot at {8 + i % 9}:{i % 6}0 and reached the hub."
    for i in range(62)
)
CONFIGS = {"with": {}, "without": {"prefix_cache_mb": 0, "chunked_prefill": False}}


def ask(user: str, adapter: AdapterRef | None = None, *, max_tokens: int = 1,
        system: str | None = SYSTEM, ignore_eos: bool = False,
        logprobs: bool = False) -> GenerationRequest:
    messages = ([ChatMessage("system", system)] if system else []) + [ChatMessage("user", user)]
    return GenerationRequest(
        base_model=EMBEDDED_MODEL_NAME,
        messages=tuple(messages),
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=ignore_eos,
                                logprobs=0 if logprobs else None),
        adapter=adapter,
    )


async def first_event(engine: LocalEngine, req: GenerationRequest) -> float:
    """Seconds from ``generate`` to the first event, reading the stream to its end."""
    began = time.perf_counter()
    first: float | None = None
    async for _event in engine.generate(req):
        if first is None:
            first = time.perf_counter() - began
    assert first is not None
    return first


async def repeated_prefix(
    engine: LocalEngine, adapter: AdapterRef, round_: int
) -> dict[str, float]:
    figures = {}
    for name, target in (("base", None), ("adapter", adapter)):
        req = ask(f"{REPEATED} (case {round_})", target)
        figures[f"{name} first time"] = await first_event(engine, req)
        figures[f"{name} again"] = await first_event(engine, req)
    figures["new question, shared system prompt"] = await first_event(
        engine, ask(QUESTIONS[round_ % len(QUESTIONS)] + f" ({round_})")
    )
    return figures


async def again_while_long(engine: LocalEngine, round_: int) -> dict[str, float]:
    """The base request of :func:`repeated_prefix` again, while a long prompt goes in beside
    8 decoding rows (other prompts than :func:`stalls`', so neither finds the other's)."""
    started = asyncio.Event()

    async def running(index: int) -> None:
        req = ask(PROMPTS[8 + index], max_tokens=64, system=None, ignore_eos=True)
        async for _event in engine.generate(req):
            started.set()

    tasks = [asyncio.create_task(running(i)) for i in range(8)]
    await started.wait()
    long = asyncio.create_task(first_event(engine, ask(f"Summarise ({round_}, again):\n{LONG}",
                                                       system=None)))
    await asyncio.sleep(0.3)
    figure = await first_event(engine, ask(f"{REPEATED} (case {round_})"))
    await long
    await asyncio.gather(*tasks)
    return {"base again, while a long prompt goes in": figure}


async def stalls(engine: LocalEngine, round_: int) -> dict[str, float]:
    # Each row's deltas: when it came, and how many tokens it carries (by its logprobs); only
    # gaps before one-token deltas are inter-token gaps (the module's docstring, 2.)
    stamps: list[list[tuple[float, int]]] = [[] for _ in range(8)]
    eighth = asyncio.Event()

    async def running(index: int) -> None:
        req = ask(PROMPTS[index], max_tokens=64, system=None, ignore_eos=True, logprobs=True)
        async for event in engine.generate(req):
            if isinstance(event, TextDelta):
                stamps[index].append((time.perf_counter(), len(event.logprobs)))
                if all(len(s) >= 8 for s in stamps):
                    eighth.set()

    tasks = [asyncio.create_task(running(i)) for i in range(8)]
    await eighth.wait()
    arrived = time.perf_counter()
    long_ttft = await first_event(engine, ask(f"Summarise ({round_}):\n{LONG}", system=None))
    done = arrived + long_ttft
    await asyncio.gather(*tasks)
    started = max(row[0][0] for row in stamps)  # every row's first token is out
    window, steady, alone = [], [], []
    for row in stamps:
        for (before, _), (after, tokens) in itertools.pairwise(row):
            if tokens != 1:  # text held back (above)
                continue
            gap = after - before
            if after >= arrived and before <= done:
                window.append(gap)
                continue
            steady.append(gap)
            if before >= started and after < arrived:
                alone.append(gap)
    return {
        "worst gap while it goes in": max(window) if window else 0.0,
        "median gap while it goes in": statistics.median(window) if window else 0.0,
        "worst gap before it arrived (steps alone)": max(alone) if alone else 0.0,
        "median gap (one decode step)": statistics.median(steady),
        "long prompt TTFT": long_ttft,
    }


def rss_child(config: str, models_dir: Path, adapters_dir: Path, precision: str) -> None:
    heap.enable()  # as a server process (main)
    adapters = [
        AdapterRef(key=f"bench:{i}", path=adapters_dir / f"adapter-{i}") for i in range(4)
    ]

    async def serve() -> None:
        async with LocalEngine(BaseModelRegistry.with_embedded(), models_dir=models_dir,
                               precision=precision, **CONFIGS[config]) as engine:
            requests = [ask(p, [None, *adapters][i % 5], max_tokens=32, system=SYSTEM)
                        for i, p in enumerate(PROMPTS)]
            for _ in range(2):
                await asyncio.gather(*(first_event(engine, r) for r in requests))
            await first_event(engine, ask(f"Summarise:\n{LONG}", system=None))

    asyncio.run(serve())
    print(json.dumps({"peak_rss_mib": heap.peak_rss_mib()}))


def peak_rss(config: str, models_dir: Path, adapters_dir: Path, precision: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", config, "--models-dir", str(models_dir),
         "--adapters-dir", str(adapters_dir), "--precision", precision],
        check=True, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_rss_mib"])


async def measure(
    models_dir: Path, adapter: AdapterRef, repeat: int, precision: str
) -> dict[str, dict[str, list[float]]]:
    """Each repeat loads each configuration's engine in turn, one alive at a time: two
    engines' scheduler threads alive at once slow each other's torch work on a small machine
    (docs/engine.md, "Threads")."""
    figures: dict[str, dict[str, list[float]]] = {name: {} for name in CONFIGS}
    for round_ in range(repeat):
        for name, options in CONFIGS.items():
            async with LocalEngine(BaseModelRegistry.with_embedded(), models_dir=models_dir,
                                   precision=precision, **options) as engine:
                await engine.load(EMBEDDED_MODEL_NAME)
                await first_event(engine, ask("Hello", adapter))  # attach the adapter, warm up
                found = {**await repeated_prefix(engine, adapter, round_),
                         **await again_while_long(engine, round_),
                         **await stalls(engine, round_)}
            # What this engine kept was frozen at its load (main): given back to the collector
            # now that it is closed, or every engine of the run would stay in memory.
            gc.unfreeze()
            for key, value in found.items():
                figures[name].setdefault(key, []).append(value)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path(".pytest_cache/d/arkor-models"))
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; medians printed")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="the engine's precision (default: auto, as a server picks it)")
    parser.add_argument("--rss-child", choices=list(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--adapters-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.models_dir, args.adapters_dir, args.precision)
        return
    base_dir = ensure_embedded_model(args.models_dir)
    # As a server process does (arkor.heap): what each loaded engine keeps is frozen, out of
    # the cyclic collector's reach. Without it a full collection here walks every object of
    # torch, transformers and the model, ~170-200 ms with the interpreter lock held, which a
    # server's streams never wait for (one to three a round here, engine loads included).
    heap.enable()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="arkor-bench-") as scratch:
        adapters = make_adapters(base_dir, Path(scratch), 4)
        figures = asyncio.run(measure(args.models_dir, adapters[0], args.repeat, args.precision))
        rss = {name: peak_rss(name, args.models_dir, Path(scratch), args.precision)
               for name in CONFIGS}
    print(f"precision {args.precision} (loaded: {resolve_on(args.precision, 'cpu')}), "
          f"torch threads: {torch.get_num_threads()}, median of {args.repeat} runs; load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("| figure | prefix cache + chunked prefill | without | ratio |")
    print("|---|---|---|---|")
    for key in figures["with"]:
        on = statistics.median(figures["with"][key]) * 1000
        off = statistics.median(figures["without"][key]) * 1000
        print(f"| {key} | {on:.0f} ms | {off:.0f} ms | {on / off:.2f}x |")
    on, off = rss["with"], rss["without"]
    print(f"| peak RSS, base + 4 adapters served | {on:.0f} MiB | {off:.0f} MiB "
          f"| {on / off:.2f}x |")
    stalls_of = figures["with"]
    print("worst gap while it goes in, each run, in decode steps (the run's median gap): "
          + ", ".join(f"{worst / step:.2f}" for worst, step in zip(
              stalls_of["worst gap while it goes in"], stalls_of["median gap (one decode step)"],
              strict=True)))


if __name__ == "__main__":
    main()
