"""Constrained decoding cost: half the batch under a JSON schema against an all-free batch.

Run: ``.venv/bin/python bench/structured.py`` (about two minutes on two cores).

Prints, measured in one run:
- decode tokens/s for 16 concurrent greedy requests, all free, against the same 16 with half
  of them constrained by a ``json_schema`` grammar (target: overhead <= 10 %). Every request
  generates exactly ``--max-tokens`` tokens (free rows use ``ignore_eos``; the schema's
  shortest document is longer than that), so both sides do the same forward steps and the
  difference is the masking: bitmask fill, unpacking, ``masked_fill`` and token consumption;
- grammar compile time for a typical 10-field schema, cold (a schema never seen) and cached
  (the same schema again: a copy of the compiled matcher), and the wire layer's
  tokenizer-free ``check_grammar``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import llguidance
import torch
from engine_throughput import PROMPTS  # the same 16 prompts as the throughput bench

from arkor.engine.base import ChatMessage, GenerationRequest, SamplingParams
from arkor.engine.embedded import ensure_embedded_model
from arkor.engine.grammar import GrammarCache, check_grammar
from arkor.engine.local import LocalEngine
from arkor.engine.registry import EMBEDDED_MODEL_NAME, BaseModelRegistry


def ten_fields(tag: str = "") -> dict[str, Any]:
    """A typical extraction schema: 10 required fields of the usual kinds."""
    return {
        "type": "object",
        "properties": {
            f"name{tag}": {"type": "string"},
            "email": {"type": "string", "format": "email"},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "score": {"type": "number"},
            "active": {"type": "boolean"},
            "country": {"enum": ["fr", "de", "es", "it", "uk", "us"]},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
            "phone": {"type": "string", "pattern": "^\\+?[0-9 ]{6,15}$"},
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                "required": ["street", "city"],
            },
            "notes": {"type": ["string", "null"]},
        },
        "required": [
            f"name{tag}",
            "email",
            "age",
            "score",
            "active",
            "country",
            "tags",
            "phone",
            "address",
            "notes",
        ],
        "additionalProperties": False,
    }


def long_document() -> dict[str, Any]:
    """At least four 10-field records: longer than any --max-tokens used here."""
    return {
        "type": "object",
        "properties": {"records": {"type": "array", "items": ten_fields(), "minItems": 4}},
        "required": ["records"],
    }


def request(prompt: str, max_tokens: int, grammar: str | None) -> GenerationRequest:
    sampling = SamplingParams(
        max_tokens=max_tokens, temperature=0.0, ignore_eos=grammar is None, grammar=grammar
    )
    return GenerationRequest(EMBEDDED_MODEL_NAME, (ChatMessage("user", prompt),), sampling)


async def concurrent(engine: LocalEngine, requests: list[GenerationRequest]) -> tuple[int, float]:
    async def one(req: GenerationRequest) -> int:
        async for event in engine.generate(req):
            if not hasattr(event, "text"):
                return int(event.completion_tokens)
        raise RuntimeError("stream ended without Finished")

    began = time.perf_counter()
    tokens = await asyncio.gather(*(one(r) for r in requests))
    return sum(tokens), time.perf_counter() - began


async def throughput(models_dir: Path, max_tokens: int, repeat: int) -> dict[str, float]:
    """Free and half-constrained runs alternate, so outside load hits both alike; each figure
    is the median of the runs (and the overhead the median of the paired runs' ratios)."""
    grammar = llguidance.grammar_from("json_schema", json.dumps(long_document()))
    free = [request(p, max_tokens, None) for p in PROMPTS]
    half = [request(p, max_tokens, grammar if i % 2 else None) for i, p in enumerate(PROMPTS)]
    engine = LocalEngine(BaseModelRegistry.with_embedded(), models_dir=models_dir)
    rates: dict[str, list[float]] = {"free": [], "half": []}
    async with engine:
        await engine.load(EMBEDDED_MODEL_NAME)
        await concurrent(engine, [request(p, 4, grammar) for p in PROMPTS[:4]])  # warm-up
        for _ in range(repeat):
            for name, batch in (("free", free), ("half", half)):
                tokens, seconds = await concurrent(engine, batch)
                if tokens != len(batch) * max_tokens:
                    raise RuntimeError(f"{name}: {tokens} tokens, expected the same every run")
                rates[name].append(tokens / seconds)
    ratios = [half / free for free, half in zip(rates["free"], rates["half"], strict=True)]
    return {"free": statistics.median(rates["free"]), "half": statistics.median(rates["half"]),
            "ratio": statistics.median(ratios)}


def compile_times(models_dir: Path, tries: int) -> dict[str, float]:
    from llguidance.hf import from_tokenizer
    from transformers import AutoTokenizer

    tokenizer = from_tokenizer(AutoTokenizer.from_pretrained(ensure_embedded_model(models_dir)))
    cache = GrammarCache(tokenizer, executor=ThreadPoolExecutor(max_workers=1))
    grammars = [
        llguidance.grammar_from("json_schema", json.dumps(ten_fields(str(i)))) for i in range(tries)
    ]

    def timed(action: Any) -> float:
        began = time.perf_counter()
        action()
        return time.perf_counter() - began

    cold = [timed(lambda g=g: cache.matcher_sync(g)) for g in grammars]
    cached = [timed(lambda g=g: cache.matcher_sync(g)) for g in grammars]
    checks = [timed(lambda g=g: check_grammar(g)) for g in grammars]
    assert cache.compilations == tries
    return {
        "cold": statistics.median(cold),
        "cached": statistics.median(cached),
        "check": statistics.median(checks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path(".pytest_cache/d/arkor-models"))
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure; medians are kept")
    parser.add_argument("--compile-tries", type=int, default=20)
    args = parser.parse_args()

    ensure_embedded_model(args.models_dir)
    compiled = compile_times(args.models_dir, args.compile_tries)
    rates = asyncio.run(throughput(args.models_dir, args.max_tokens, args.repeat))

    print(
        f"torch threads: {torch.get_num_threads()}, 16 concurrent greedy requests x "
        f"{args.max_tokens} tokens, median of {args.repeat}, "
        f"load average at the end: {os.getloadavg()[0]:.1f}"
    )
    print(f"all free: {rates['free']:.1f} tok/s")
    print(f"half json_schema-constrained: {rates['half']:.1f} tok/s")
    overhead = 100 * (1 / rates["ratio"] - 1)
    print(f"ratio {rates['ratio']:.3f}; overhead {overhead:.1f} % (target <= 10 %)")
    print(
        f"10-field schema: compile cold {1000 * compiled['cold']:.2f} ms, cached "
        f"{1000 * compiled['cached']:.3f} ms (median of {args.compile_tries}); "
        f"check_grammar {1000 * compiled['check']:.2f} ms"
    )


if __name__ == "__main__":
    main()
