"""Constrained decoding: grammars checked, compiled once, and enforced inside the batch."""

from __future__ import annotations

import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import llguidance
import pytest
import torch

from arkor.engine.base import AdapterRef, GrammarError
from arkor.engine.grammar import GrammarCache, check_grammar
from arkor.engine.local import LocalEngine
from arkor.engine.local.constraint import Constraint, apply_constraints
from arkor.engine.registry import EMBEDDED_MODEL_NAME
from tests.engine.conftest import Outcome, Reference, ask, collect

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "kind": {"enum": ["person", "animal", "thing"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["name", "age", "kind", "tags"],
    "additionalProperties": False,
}
JSON_PROMPTS = [
    "Describe a person as JSON.",
    "Tell me about your favourite animal.",
    "What is the capital of France?",
    "Write a poem about autumn rain.",
    "The upload button spins forever and nothing happens.",
]
LABELS = ["billing", "bug", "other"]
PHONE = r"[0-9]{3}-[0-9]{4}"
TICKET = "I see two identical payments for the same order."
SENTENCE = "Die Katze schläft auf dem Sofa."


def json_grammar(schema: dict[str, object]) -> str:
    return llguidance.grammar_from("json_schema", json.dumps(schema))


def choice_grammar(labels: list[str]) -> str:
    return llguidance.grammar_from("choice", json.dumps(labels))


def run(coroutine):
    return asyncio.run(coroutine)


def test_check_grammar_accepts_good_grammars_and_names_what_is_unsupported() -> None:
    check_grammar(json_grammar(PERSON))
    check_grammar(choice_grammar(LABELS))
    check_grammar(llguidance.grammar_from("regex", PHONE))
    with pytest.raises(GrammarError, match=r"if"):
        check_grammar(json_grammar({"type": "object", "if": {"required": ["a"]}}))
    with pytest.raises(GrammarError, match="regex"):
        check_grammar(llguidance.grammar_from("regex", "[a-z"))
    with pytest.raises(GrammarError):
        check_grammar("this is not a grammar {{")


def test_json_schema_output_always_validates(engine: LocalEngine) -> None:
    grammar = json_grammar(PERSON)

    async def scenario() -> list[Outcome]:
        greedy = [collect(engine, ask(p, max_tokens=200, grammar=grammar)) for p in JSON_PROMPTS]
        sampled = [
            collect(engine, ask(p, max_tokens=200, grammar=grammar, temperature=1.0, seed=i))
            for i, p in enumerate(JSON_PROMPTS)
        ]
        return await asyncio.gather(*greedy, *sampled)

    for outcome in run(scenario()):
        assert outcome.finished.finish_reason == "stop", outcome.text
        jsonschema.validate(json.loads(outcome.text), PERSON)


def test_choice_yields_only_a_listed_label(engine: LocalEngine, adapter_a: AdapterRef) -> None:
    grammar = choice_grammar(LABELS)

    async def scenario() -> list[Outcome]:
        return await asyncio.gather(
            *(
                collect(engine, ask(p, adapter=a, grammar=grammar, temperature=t, seed=3))
                for p in JSON_PROMPTS
                for a in (None, adapter_a)
                for t in (0.0, 1.0)
            )
        )

    for outcome in run(scenario()):
        assert outcome.text in LABELS
        assert outcome.finished.finish_reason == "stop"


def test_regex_output_matches(engine: LocalEngine) -> None:
    grammar = llguidance.grammar_from("regex", PHONE)
    outcome = run(collect(engine, ask("What is your phone number?", grammar=grammar)))
    assert re.fullmatch(PHONE, outcome.text), outcome.text
    assert outcome.finished.finish_reason == "stop"


def test_the_same_grammar_compiles_once(engine: LocalEngine) -> None:
    schema = {"type": "object", "properties": {"compiled_once": {"type": "boolean"}}}
    grammar = json_grammar(schema)

    async def scenario() -> tuple[int, int, int]:
        await engine.load(EMBEDDED_MODEL_NAME)
        before = engine.grammar_compilations(EMBEDDED_MODEL_NAME)
        await asyncio.gather(*(collect(engine, ask(p, grammar=grammar)) for p in JSON_PROMPTS))
        together = engine.grammar_compilations(EMBEDDED_MODEL_NAME)
        await collect(engine, ask("One more.", grammar=grammar))
        return before, together, engine.grammar_compilations(EMBEDDED_MODEL_NAME)

    before, together, after = run(scenario())
    assert together == before + 1
    assert after == together


def test_a_bad_grammar_fails_alone(engine: LocalEngine, reference: Reference) -> None:
    bad = json_grammar({"type": "object", "if": {"required": ["a"]}})

    async def scenario() -> list[object]:
        return await asyncio.gather(
            collect(engine, ask(TICKET, max_tokens=12)),
            collect(engine, ask(TICKET, grammar=bad)),
            collect(engine, ask(TICKET, grammar="not a grammar at all {")),
            collect(engine, ask(TICKET, max_tokens=12, grammar=choice_grammar(LABELS))),
            return_exceptions=True,
        )

    free, bad_schema, garbage, constrained = run(scenario())
    assert isinstance(bad_schema, GrammarError) and "if" in str(bad_schema)
    assert isinstance(garbage, GrammarError)
    assert isinstance(free, Outcome) and free.text == reference.text(TICKET, None, 12)
    assert isinstance(constrained, Outcome) and constrained.text in LABELS


def test_compiling_never_blocks_the_event_loop(embedded_model_dir: Path) -> None:
    """A grammar compiles on a worker thread while the loop keeps ticking."""
    from llguidance.hf import from_tokenizer
    from transformers import AutoTokenizer

    cache = GrammarCache(
        from_tokenizer(AutoTokenizer.from_pretrained(embedded_model_dir)),
        executor=ThreadPoolExecutor(max_workers=1),
    )
    big = json_grammar(  # about 0.5 s to compile on the development machine
        {
            "type": "object",
            "properties": {
                f"field_{i}": {"type": "string", "pattern": "^[a-z]{2,8}(-[0-9]{1,4}){0,3}$"}
                for i in range(3000)
            },
        }
    )

    async def scenario() -> tuple[float, float]:
        worst = 0.0
        began = time.monotonic()
        task = asyncio.create_task(cache.matcher(big))
        while not task.done():
            tick = time.monotonic()
            await asyncio.sleep(0.005)
            worst = max(worst, time.monotonic() - tick - 0.005)
        await task
        compiling = time.monotonic() - began
        await cache.matcher(big)
        return compiling, worst

    compiling, worst_lag = run(scenario())
    assert cache.compilations == 1
    assert compiling > 0.1, "the grammar must take real compile time for this to mean much"
    assert worst_lag < compiling / 3


def test_masks_cover_logits_wider_or_narrower_than_the_vocabulary(
    embedded_model_dir: Path,
) -> None:
    from llguidance.hf import from_tokenizer
    from transformers import AutoTokenizer

    tokenizer = from_tokenizer(AutoTokenizer.from_pretrained(embedded_model_dir))
    grammar = choice_grammar(LABELS)
    vocab = tokenizer.vocab_size
    for width in (vocab + 64, vocab - 7):
        logits = torch.zeros(2, width)
        constraint = Constraint(llguidance.LLMatcher(tokenizer, grammar))
        failed = apply_constraints(
            logits,
            [1],
            [constraint],
            vocab_size=vocab,
            hold_eos=[False],
            eos_token_ids=[2],
        )
        assert failed == {}
        allowed = torch.isfinite(logits[1]).nonzero().flatten().tolist()
        assert allowed and all(i < min(width, vocab) for i in allowed)
        assert torch.isfinite(logits[0]).all(), "a free row is never masked"


def test_a_mixed_batch_gives_each_row_what_it_gives_alone(
    engine: LocalEngine, adapter_a: AdapterRef, adapter_b: AdapterRef
) -> None:
    person, labels = json_grammar(PERSON), choice_grammar(LABELS)
    phone = llguidance.grammar_from("regex", PHONE)
    # Only the first JSON row must finish (it is validated); the others may be cut short, as
    # long as they are cut the same way alone and in the batch.
    waves = [
        [
            ask("Name three primary colors.", max_tokens=16),
            ask(JSON_PROMPTS[0], max_tokens=80, grammar=person),
            ask(TICKET, adapter=adapter_a, grammar=labels),
        ],
        [
            ask(SENTENCE, adapter=adapter_b, max_tokens=12),
            ask(TICKET, adapter=adapter_a, max_tokens=12),
            ask(JSON_PROMPTS[1], adapter=adapter_b, max_tokens=32, grammar=person),
        ],
        [
            ask("What is your phone number?", grammar=phone),
            ask(JSON_PROMPTS[3], adapter=adapter_a, max_tokens=32, grammar=person),
            ask(STORY_PROMPT, max_tokens=24),
        ],
    ]

    async def scenario() -> tuple[list[Outcome], list[Outcome]]:
        alone = [await collect(engine, request) for wave in waves for request in wave]
        tasks = []
        for wave in waves:
            started = asyncio.Event()
            tasks.extend(asyncio.create_task(collect(engine, r, started)) for r in wave)
            await started.wait()  # the next wave joins while this one decodes
        return alone, [await task for task in tasks]

    alone, together = run(scenario())
    for single, mixed in zip(alone, together, strict=True):
        assert mixed.text == single.text
        assert mixed.finished == single.finished
    jsonschema.validate(json.loads(together[1].text), PERSON)
    assert together[2].text in LABELS


STORY_PROMPT = "Write a short story about a lighthouse keeper."
