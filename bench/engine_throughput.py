"""LocalEngine throughput against plain transformers + PEFT ``generate`` one request at a time.

Run: ``.venv/bin/python bench/engine_throughput.py`` (five to ten minutes on two cores). Each
figure is the median of ``--repeat`` runs (default 5), and every run's figure is printed.

Every request generates exactly ``--max-tokens`` tokens, so both sides do the same number of
forward steps: the baseline passes ``min_new_tokens`` (EOS is masked out), the engine is told
to treat no token as EOS. Greedy decoding throughout. The adapters are rank-8 q_proj/v_proj
LoRAs (the shape the engine tests train) with small random weights, made fresh each run.

Prints:
- aggregate output tokens/s for 16 concurrent requests over 4 adapters plus the base model,
  and the ratio to the one-at-a-time baseline (target >= 5x);
- LoRA overhead: the same 16 requests all on the base model vs mixed (target <= 10 %);
- time to first token p50/p99 with requests arriving while others decode;
- first-token latency of an adapter never loaded before vs a warm one, the same prompt with
  the prefix cache emptied between them (target <= 150 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from arkor.engine.base import (
    AdapterRef,
    ChatMessage,
    GenerationRequest,
    SamplingParams,
    TextDelta,
)
from arkor.engine.embedded import ensure_embedded_model
from arkor.engine.local import LocalEngine
from arkor.engine.local.adapters import PEFT_DEPRECATION
from arkor.engine.local.threads import in_own_thread
from arkor.engine.registry import EMBEDDED_MODEL_NAME, BaseModelRegistry

PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle gear system works.",
    "Describe a busy market in the morning.",
    "Give advice to someone starting to learn the piano.",
    "What should I pack for a week of hiking?",
    "Summarise the water cycle for a child.",
    "Write a polite email asking for a deadline extension.",
    "Describe the taste of a ripe mango.",
    "How do I keep basil alive on a windowsill?",
    "Explain what a database index is.",
    "Tell me about the history of tea.",
    "Write a poem about autumn rain.",
    "My invoice shows the wrong amount, what can I do?",
    "The app crashes when I open the settings page.",
    "Les enfants jouent dans le jardin.",
    "Describe your ideal weekend.",
]
def make_adapters(base_dir: Path, out: Path, count: int) -> list[AdapterRef]:
    """Made on a thread that ends with the work (``in_own_thread``): torch work leaves an
    OpenMP team alive on the thread that ran it, and one more live team slows the engine's
    steps on a small machine (docs/engine.md, "Threads"), as a server's main thread runs no
    torch."""
    return asyncio.run(in_own_thread("bench-adapters", _make_adapters, base_dir, out, count))


def _make_adapters(base_dir: Path, out: Path, count: int) -> list[AdapterRef]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    refs = []
    for index in range(count):
        torch.manual_seed(index)
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", PEFT_DEPRECATION, FutureWarning)
            model = get_peft_model(model, config)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.02)
        model.save_pretrained(out / f"adapter-{index}")
        refs.append(AdapterRef(key=f"bench:{index}", path=out / f"adapter-{index}"))
    return refs


def request(prompt: str, adapter: AdapterRef | None, max_tokens: int) -> GenerationRequest:
    return GenerationRequest(
        base_model=EMBEDDED_MODEL_NAME,
        messages=(ChatMessage("user", prompt),),
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0),
        adapter=adapter,
    )


def baseline(base_dir: Path, requests: list[GenerationRequest]) -> Callable[[], tuple[int, float]]:
    """One request at a time through ``generate``, adapters switched with set_adapter.

    Returns a function that serves all ``requests`` and gives (tokens, seconds).
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    adapters = sorted({r.adapter for r in requests if r.adapter}, key=lambda a: a.key)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", PEFT_DEPRECATION, FutureWarning)
        model = PeftModel.from_pretrained(base, adapters[0].path, adapter_name=adapters[0].key)
    for adapter in adapters[1:]:
        model.load_adapter(adapter.path, adapter_name=adapter.key)
    model.eval()

    def run(req: GenerationRequest) -> int:
        ids = tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in req.messages],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
        inputs = torch.tensor([list(ids)])
        n = req.sampling.max_tokens
        kwargs = {"max_new_tokens": n, "min_new_tokens": n, "do_sample": False}
        kwargs["pad_token_id"] = tokenizer.pad_token_id
        if req.adapter is None:
            with model.disable_adapter():
                out = model.generate(input_ids=inputs, **kwargs)
        else:
            model.set_adapter(req.adapter.key)
            out = model.generate(input_ids=inputs, **kwargs)
        return out.shape[1] - inputs.shape[1]

    def run_all() -> tuple[int, float]:
        with torch.inference_mode():
            began = time.perf_counter()
            tokens = sum(run(r) for r in requests)
            return tokens, time.perf_counter() - began

    with torch.inference_mode():
        run(requests[0])
    return run_all


async def timed(engine: LocalEngine, req: GenerationRequest) -> tuple[int, float | None]:
    """Completion tokens and seconds to the first text."""
    began = time.perf_counter()
    first = None
    async for event in engine.generate(req):
        if isinstance(event, TextDelta):
            first = first if first is not None else time.perf_counter() - began
        else:
            return event.completion_tokens, first
    raise RuntimeError("stream ended without Finished")


async def concurrent(engine: LocalEngine, requests: list[GenerationRequest]) -> tuple[int, float]:
    began = time.perf_counter()
    results = await asyncio.gather(*(timed(engine, r) for r in requests))
    return sum(tokens for tokens, _ in results), time.perf_counter() - began


async def staggered_ttft(
    engine: LocalEngine, requests: list[GenerationRequest], mean_gap: float
) -> list[float]:
    rng = random.Random(1)
    tasks = []
    for req in requests:
        tasks.append(asyncio.create_task(timed(engine, req)))
        await asyncio.sleep(rng.expovariate(1 / mean_gap))
    return [first for _, first in await asyncio.gather(*tasks) if first is not None]


async def cold_vs_warm(
    engine: LocalEngine, fresh: list[AdapterRef], prompt: str
) -> tuple[float, float]:
    """First token of the prompt on an adapter never attached, then on the same adapter again
    with the prefix cache emptied first, so the warm request computes the same prompt (the
    difference is the attach, not a cached prompt)."""
    cold, warm = [], []
    for adapter in fresh:
        cold.append((await timed(engine, request(prompt, adapter, 2)))[1])
        engine.clear_prefix_cache(EMBEDDED_MODEL_NAME)
        warm.append((await timed(engine, request(prompt, adapter, 2)))[1])
    return statistics.median(cold), statistics.median(warm)


def record(runs: dict[str, list[float]], name: str, tokens: int, seconds: float) -> None:
    runs.setdefault(name, []).append(tokens / seconds)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def engine_figures(
    models_dir: Path,
    mixed: list[GenerationRequest],
    base_only: list[GenerationRequest],
    fresh: list[AdapterRef],
    arrivals: list[GenerationRequest],
    repeat: int,
    run_baseline: Callable[[], tuple[int, float]],
) -> dict[str, float]:
    """Each repeat runs the baseline, then base-only and mixed back to back (which of the two
    goes first alternates), so load from other processes on the machine hits all of them
    alike; the median tokens/s of the repeats is reported (``<name>_rate``), and every run's
    (``<name>_runs``). The engine is closed while the baseline runs (a new one each repeat):
    the two never have torch threads alive at once, and the baseline runs on a thread that
    ends with it (docs/engine.md, "Threads")."""
    runs: dict[str, list[float]] = {}
    figures: dict[str, float] = {}
    for index in range(repeat):
        record(runs, "baseline", *await in_own_thread("bench-baseline", run_baseline))
        async with await ready_engine(models_dir, [*mixed, *base_only]) as engine:
            # Alternate which goes first, so a drift of the machine within a repeat (it runs
            # for tens of seconds) falls on both sides alike.
            order = ("base", "mixed") if index % 2 == 0 else ("mixed", "base")
            for name in order:
                record(runs, name, *await concurrent(engine, base_only if name == "base"
                                                     else mixed))
    for name, rates in runs.items():
        figures[f"{name}_rate"] = statistics.median(rates)
    run_lists = {name: ", ".join(f"{r:.0f}" for r in rates) for name, rates in runs.items()}
    print("tokens/s of each run:", "; ".join(f"{k} {v}" for k, v in run_lists.items()))
    async with await ready_engine(models_dir, mixed) as engine:
        ttft = await staggered_ttft(engine, arrivals, mean_gap=0.5)
        figures["ttft_p50"], figures["ttft_p99"] = percentile(ttft, 0.5), percentile(ttft, 0.99)
        cold, warm = await cold_vs_warm(engine, fresh, PROMPTS[0])
        figures["cold"], figures["warm"] = cold, warm
    return figures


async def ready_engine(models_dir: Path, warm: list[GenerationRequest]) -> LocalEngine:
    """A default engine with the embedded model loaded, and ``warm``'s prompts (4 tokens each,
    16 at a time) seen once: each side measured finds its prompts in the prefix cache alike."""
    engine = LocalEngine(BaseModelRegistry.with_embedded(), models_dir=models_dir)
    await engine.load(EMBEDDED_MODEL_NAME)
    # Every request runs to max_tokens, as the baseline does with min_new_tokens.
    engine._schedulers[EMBEDDED_MODEL_NAME].loaded.eos_token_ids = frozenset()
    for first in range(0, len(warm), 16):
        await concurrent(engine, [request(r.messages[0].content, r.adapter, 4)
                                  for r in warm[first:first + 16]])
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path(".pytest_cache/d/arkor-models"))
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs per throughput figure; the median is kept"
    )
    args = parser.parse_args()

    base_dir = ensure_embedded_model(args.models_dir)
    with tempfile.TemporaryDirectory(prefix="arkor-bench-") as scratch:
        adapters = make_adapters(base_dir, Path(scratch), 7)
        serving, fresh = adapters[:4], adapters[4:]
        targets: list[AdapterRef | None] = [None, *serving]
        mixed = [
            request(prompt, targets[i % len(targets)], args.max_tokens)
            for i, prompt in enumerate(PROMPTS)
        ]
        base_only = [request(prompt, None, args.max_tokens) for prompt in PROMPTS]
        arrivals = [
            request(PROMPTS[i % len(PROMPTS)], targets[i % len(targets)], 24) for i in range(32)
        ]
        run_baseline = asyncio.run(in_own_thread("bench-baseline", baseline, base_dir, mixed))
        figures = asyncio.run(
            engine_figures(
                args.models_dir, mixed, base_only, fresh, arrivals, args.repeat, run_baseline
            )
        )

    baseline_rate = figures["baseline_rate"]
    mixed_rate = figures["mixed_rate"]
    base_rate = figures["base_rate"]
    print(
        f"torch threads: {torch.get_num_threads()}, max_tokens per request: {args.max_tokens}, "
        f"median of {args.repeat} runs, load average at the end: {os.getloadavg()[0]:.1f}"
    )
    print(f"baseline, one at a time (generate): {baseline_rate:.1f} tok/s")
    print(f"LocalEngine, 16 concurrent (4 adapters + base): {mixed_rate:.1f} tok/s")
    print(f"throughput ratio: {mixed_rate / baseline_rate:.2f}x (target >= 5x)")
    print(
        f"LocalEngine, 16 concurrent, base only: {base_rate:.1f} tok/s; "
        f"LoRA overhead {100 * (base_rate / mixed_rate - 1):.1f} % (target <= 10 %)"
    )
    print(
        f"time to first token, 32 requests arriving ~2/s: p50 {1000 * figures['ttft_p50']:.0f} ms,"
        f" p99 {1000 * figures['ttft_p99']:.0f} ms"
    )
    print(
        f"first token, adapter never loaded: {1000 * figures['cold']:.0f} ms; warm: "
        f"{1000 * figures['warm']:.0f} ms; extra {1000 * (figures['cold'] - figures['warm']):.0f}"
        " ms (target <= 150 ms)"
    )


if __name__ == "__main__":
    main()
