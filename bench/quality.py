"""Quality of each engine precision against float32: greedy outputs and perplexity.

Run: ``.venv/bin/python bench/quality.py`` (about three minutes on two cores).

For each precision the embedded model is loaded through :class:`LocalEngine` and answers
the same 50 varied prompts greedily (``--max-tokens`` each, natural stops allowed); the
outputs are compared with float32's: how many are identical, and token agreement (the
common prefix of the two answers' tokens over the float32 answer's length, averaged). The
perplexity of a fixed held-out English text (written below, not from any training set) is
computed with the same model weights; the quality bar is perplexity within 2 % of float32.

With ``--demo`` the demo job (``arkor train --demo``'s config) is trained first through the
real runner (about a minute or two), and each precision answers the 24 held-out tickets
with that adapter, one ticket at a time (the same answers in every run of one adapter); the
bar is the format on all 24 and the right label within one ticket of float32
(``--demo-adapter DIR`` uses an adapter trained before instead). The 52 prompts are answered
all at once, so which of them share a batch, and with it the last bits of their rounding,
varies from run to run: their identical-output counts move by a few between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from engine_throughput import PROMPTS as THROUGHPUT_PROMPTS

from arkor.engine.base import (
    AdapterRef,
    ChatMessage,
    GenerationRequest,
    SamplingParams,
    TextDelta,
)
from arkor.engine.embedded import ensure_embedded_model
from arkor.engine.local import LocalEngine
from arkor.engine.local.quantize import apply_precision
from arkor.engine.registry import EMBEDDED_MODEL_NAME, BaseModelRegistry
from arkor.training.demo import DEMO_CONFIG, demo_eval_path
from training import ANSWER, run_demo

PRECISIONS = ("float32", "bfloat16", "int8", "int4")
PERPLEXITY_BAR = 0.02

PROMPTS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Translate 'good morning' to Spanish.",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "What is 17 plus 25?",
    "Give me a synonym for 'happy'.",
    "Who wrote Romeo and Juliet?",
    "List four planets of the solar system.",
    "How do I boil an egg?",
    *THROUGHPUT_PROMPTS[:14],  # the throughput bench's first 14, in its order
    "Les enfants jouent dans le jardin. What language is this?",
    "Describe your ideal weekend.",
    "What is the difference between a list and a tuple in Python?",
    "Write a Python function that reverses a string.",
    "What does HTTP stand for?",
    "Give three tips for better sleep.",
    "Why is the sky blue?",
    "What is the boiling point of water in Fahrenheit?",
    "Suggest a name for a pet turtle.",
    "Explain recursion to a beginner.",
    "What are the main causes of inflation?",
    "Write a limerick about a cat.",
    "How many legs does a spider have?",
    "Describe the smell of fresh bread.",
    "What is a prime number?",
    "Convert 5 kilometres to miles.",
    "Write a tweet announcing a new coffee shop.",
    "What is the largest ocean on Earth?",
    "How does a refrigerator keep food cold?",
    "Give an example of a metaphor.",
    "I forgot my password and the reset email never arrives.",
    "Write SQL to count rows in a table named users.",
    "What is the opposite of 'ancient'?",
    "Explain what a LoRA adapter is.",
    "Plan a three-course dinner menu.",
    "Describe a thunderstorm from the point of view of a dog.",
    "What year did the first person walk on the Moon?",
    "Give me a motivational quote.",
]

HELD_OUT = """\
The old railway station at the edge of town had been closed for nearly twenty years before
a group of volunteers decided to turn it into a library. They began by clearing the platform
of weeds and broken glass, then repaired the roof, which had let the rain in for so long that
the waiting room floor had warped into small hills. Nobody among them was a builder, so they
learned as they went: a retired teacher taught herself to lay tiles from library books, and
two teenagers who had never held a saw built the first shelves from timber donated by a
farmer who no longer needed his barn.

Word spread slowly at first. A few families came on Saturday mornings to see what was
happening, and some of them stayed to help. By the end of the first summer the station held
about three thousand books, most of them given by people who had cleared out their attics.
There were cookbooks from the nineteen seventies, atlases that still showed countries which
no longer exist, and a complete set of encyclopaedias that a child could barely lift.

The library opened officially in October, on a cold and windy afternoon. The mayor gave a
short speech, a brass band played slightly out of tune, and the first book was borrowed by a
seven-year-old girl who chose a guide to the birds of the region. She returned it three weeks
later with a list, written in careful pencil, of every bird she had seen from her bedroom
window. The volunteers pinned the list to the notice board, where it stayed for years.

Today the station library lends more than a thousand books a month. Trains still pass on the
line behind it, though they no longer stop, and when one goes by the shelves tremble gently
and readers look up from their pages for a moment before returning to their stories.
"""


def request(prompt: str, max_tokens: int) -> GenerationRequest:
    return GenerationRequest(
        base_model=EMBEDDED_MODEL_NAME,
        messages=(ChatMessage("user", prompt),),
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0),
    )


async def answer(engine: LocalEngine, req: GenerationRequest) -> str:
    parts = []
    async for event in engine.generate(req):
        if isinstance(event, TextDelta):
            parts.append(event.text)
    return "".join(parts)


async def greedy_outputs(models_dir: Path, precision: str, max_tokens: int) -> list[str]:
    engine = LocalEngine(BaseModelRegistry.with_embedded(), models_dir=models_dir,
                         precision=precision)
    async with engine:
        return list(await asyncio.gather(*(answer(engine, request(p, max_tokens))
                                           for p in PROMPTS)))


async def demo_answers(models_dir: Path, precision: str, adapter: Path) -> list[tuple[str, str]]:
    """The demo adapter's answers to the held-out tickets, with the gold answers."""
    rows = [json.loads(line)["messages"] for line in demo_eval_path().read_text().splitlines()]
    ref = AdapterRef(key="bench:demo", path=adapter)
    requests = [
        GenerationRequest(
            base_model=EMBEDDED_MODEL_NAME,
            messages=tuple(ChatMessage(m["role"], m["content"]) for m in row[:-1]),
            sampling=SamplingParams(max_tokens=12, temperature=0.0),
            adapter=ref,
        )
        for row in rows
    ]
    engine = LocalEngine(BaseModelRegistry.with_embedded(), models_dir=models_dir,
                         precision=precision)
    async with engine:
        # One at a time: a row's rounding depends on the padding of the rows batched with it
        # (attention over a left-padded cache), so answered together the tickets' labels
        # moved with the batches of the run, by a ticket or two of 24 at one precision.
        texts = [await answer(engine, r) for r in requests]
    return list(zip(texts, [row[-1]["content"] for row in rows], strict=True))


def perplexity(model_dir: Path, precision: str, tokenizer: Any) -> float:
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    apply_precision(model, precision, torch.device("cpu"))
    model.eval()
    ids = torch.tensor([tokenizer(HELD_OUT)["input_ids"]])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, :-1].float()
    loss = torch.nn.functional.cross_entropy(logits, ids[0, 1:])
    return math.exp(float(loss))


def agreement(tokenizer: Any, reference: str, other: str) -> float:
    ref, got = tokenizer(reference)["input_ids"], tokenizer(other)["input_ids"]
    if not ref:
        return 1.0 if not got else 0.0
    common = 0
    for a, b in zip(ref, got, strict=False):
        if a != b:
            break
        common += 1
    return common / len(ref)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path(".pytest_cache/d/arkor-models"))
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--precision", action="append", choices=PRECISIONS[1:],
                        help="precisions compared with float32 (default: all)")
    parser.add_argument("--demo", action="store_true",
                        help="train the demo adapter and compare its held-out answers")
    parser.add_argument("--demo-adapter", type=Path, help="a demo adapter trained before")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    model_dir = ensure_embedded_model(args.models_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    load_before = os.getloadavg()[0]
    rows = []
    reference: list[str] = []
    reference_ppl = 0.0
    for precision in ("float32", *(args.precision or PRECISIONS[1:])):
        began = time.perf_counter()
        outputs = asyncio.run(greedy_outputs(args.models_dir, precision, args.max_tokens))
        ppl = perplexity(model_dir, precision, tokenizer)
        if precision == "float32":
            reference, reference_ppl = outputs, ppl
        identical = sum(a == b for a, b in zip(reference, outputs, strict=True))
        agree = sum(agreement(tokenizer, a, b) for a, b in zip(reference, outputs, strict=True))
        change = ppl / reference_ppl - 1
        rows.append((precision, identical, agree / len(PROMPTS), ppl, change,
                     abs(change) <= PERPLEXITY_BAR, time.perf_counter() - began))
    print(f"{len(PROMPTS)} prompts, greedy, max_tokens {args.max_tokens}; torch threads "
          f"{torch.get_num_threads()}; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print("| precision | identical outputs | token agreement | perplexity | vs float32 "
          "| passes (<= 2 %) | seconds |")
    print("|---|---|---|---|---|---|---|")
    for precision, identical, agree, ppl, change, ok, seconds in rows:
        print(f"| {precision} | {identical}/{len(PROMPTS)} | {100 * agree:.1f} % | {ppl:.3f} "
              f"| {100 * change:+.2f} % | {'yes' if ok else 'no'} | {seconds:.0f} |")
    if args.demo or args.demo_adapter:
        demo_quality(args, model_dir, [row[0] for row in rows])


def demo_quality(args: argparse.Namespace, model_dir: Path, precisions: list[str]) -> None:
    adapter = args.demo_adapter
    if adapter is None:
        work = Path(tempfile.mkdtemp(prefix="arkor-bench-quality-"))
        run_demo(model_dir, work, dict(DEMO_CONFIG))
        adapter = work / "out" / "final"
    print(f"demo adapter {adapter}: 24 held-out tickets, greedy")
    print("| precision | format `LABEL: x` | right label | passes (24/24, within one of float32) |")
    print("|---|---|---|---|")
    reference = 0
    for precision in precisions:
        answers = asyncio.run(demo_answers(args.models_dir, precision, adapter))
        formatted = sum(bool(ANSWER.fullmatch(text)) for text, _ in answers)
        correct = sum(text == gold for text, gold in answers)
        reference = correct if precision == "float32" else reference
        ok = formatted == len(answers) and abs(correct - reference) <= 1
        print(f"| {precision} | {formatted}/{len(answers)} | {correct}/{len(answers)} "
              f"| {'yes' if ok else 'no'} |")


if __name__ == "__main__":
    main()
