"""The sampling surface: bias, penalties, top-k, min-p, min_tokens and ignore_eos."""

from __future__ import annotations

import asyncio

import pytest
import torch

from arkor.engine.base import InvalidRequest, SamplingParams
from arkor.engine.local import LocalEngine
from arkor.engine.local.penalties import Penalties, apply_penalties
from arkor.engine.local.sampling import RowSampler, next_tokens
from tests.engine.conftest import Outcome, Reference, ask, collect

CAPITAL = "What is the capital of France?"
STORY = "Write a long story about a dragon who learns to bake bread."
CPU = torch.device("cpu")


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_banned_token_never_appears(engine: LocalEngine, reference: Reference) -> None:
    plain = reference.tokens(STORY, None, 24)
    banned = tuple((token, -100.0) for token in sorted(set(plain[:6])))

    outcome = run(collect(engine, ask(STORY, max_tokens=24, logit_bias=banned, logprobs=0)))

    chosen = {entry.token_id for entry in outcome.logprobs}
    assert len(outcome.logprobs) == 24
    assert not chosen & {token for token, _ in banned}


def test_a_positive_bias_forces_a_token(engine: LocalEngine, reference: Reference) -> None:
    token = 35
    outcome = run(collect(engine, ask(STORY, max_tokens=4, logit_bias=((token, 100.0),))))
    assert outcome.text == reference.decode([token] * 4)


def test_a_token_id_outside_the_vocabulary_is_an_invalid_request(engine: LocalEngine) -> None:
    with pytest.raises(InvalidRequest) as refused:
        run(collect(engine, ask(STORY, max_tokens=4, logit_bias=((10**9, 1.0),))))
    assert refused.value.param == "logit_bias" and "token id 1000000000" in str(refused.value)


def test_ignore_eos_generates_exactly_max_tokens(engine: LocalEngine, reference: Reference) -> None:
    natural = reference.tokens(CAPITAL, None, 40)
    assert natural[-1] == 2 and len(natural) < 24, "the prompt should end early on its own"

    outcome = run(collect(engine, ask(CAPITAL, max_tokens=24, ignore_eos=True)))

    assert outcome.finished.finish_reason == "length"
    assert outcome.finished.completion_tokens == 24
    assert outcome.text.startswith(reference.decode(natural))


def test_min_tokens_holds_eos_and_stop_strings_back(
    engine: LocalEngine, reference: Reference
) -> None:
    natural = reference.text(CAPITAL, None, 40)
    early_stop = natural.split()[1]  # a word in the first few tokens

    held = run(collect(engine, ask(CAPITAL, max_tokens=40, min_tokens=20, stop=(early_stop,))))
    free = run(collect(engine, ask(CAPITAL, max_tokens=40, stop=(early_stop,))))

    assert held.finished.completion_tokens >= 20
    assert held.text.startswith(natural.rstrip(".")) and early_stop in held.text
    assert free.finished.finish_reason == "stop" and early_stop not in free.text


@pytest.mark.parametrize(
    "penalty",
    [
        {"presence_penalty": 2.0},
        {"frequency_penalty": 2.0},
        {"repetition_penalty": 1.5},
    ],
)
def test_each_penalty_changes_the_output(
    engine: LocalEngine, reference: Reference, penalty: dict[str, float]
) -> None:
    outcome = run(collect(engine, ask(STORY, max_tokens=40, **penalty)))
    assert outcome.finished.completion_tokens == 40
    assert outcome.text != reference.text(STORY, None, 40)


def test_top_k_one_and_min_p_one_are_greedy(engine: LocalEngine, reference: Reference) -> None:
    async def scenario() -> list[Outcome]:
        return await asyncio.gather(
            collect(engine, ask(STORY, max_tokens=20, temperature=1.3, top_k=1, seed=5)),
            collect(engine, ask(STORY, max_tokens=20, temperature=1.3, min_p=1.0, seed=6)),
        )

    top_k, min_p = run(scenario())
    assert top_k.text == min_p.text == reference.text(STORY, None, 20)


def test_seeded_rows_sample_the_same_whatever_shares_the_batch(engine: LocalEngine) -> None:
    def sampled(seed: int) -> object:
        return ask(STORY, max_tokens=16, temperature=0.9, top_k=40, min_p=0.02, seed=seed)

    async def scenario() -> tuple[Outcome, list[Outcome]]:
        alone = await collect(engine, sampled(7))
        crowd = await asyncio.gather(
            collect(engine, sampled(7)),
            collect(engine, ask(CAPITAL, max_tokens=20, presence_penalty=1.0)),
            collect(engine, ask(STORY, max_tokens=12, logit_bias=((35, 5.0),), logprobs=2)),
            collect(engine, ask(STORY, max_tokens=16, temperature=0.7, top_p=0.9, seed=1)),
        )
        return alone, list(crowd)

    alone, crowd = run(scenario())
    assert crowd[0].text == alone.text


def test_penalties_follow_vllm() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5, 3.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    params = SamplingParams(repetition_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25)
    first = Penalties(params, vocab_width=5, prompt_ids=[1], device=CPU)
    for token in (0, 0, 3):
        first.add(token)
    second = Penalties(
        SamplingParams(presence_penalty=1.0), vocab_width=5, prompt_ids=[], device=CPU
    )
    second.add(4)

    apply_penalties(logits, [0, 1], [first, second])

    # token 0: seen, positive, /2 then -0.5*2 -0.25; token 1: prompt only, negative, *2;
    # token 3: /2 -0.5 -0.25; others untouched.
    assert logits[0].tolist() == pytest.approx([2.0 / 2 - 1.0 - 0.25, -4.0, 1.0, 0.25 - 0.75, 3.0])
    assert logits[1].tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.0])


def test_top_k_keeps_only_the_k_most_likely() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 100)
    samplers = [
        RowSampler.for_params(SamplingParams(temperature=1.0, top_k=3, seed=s), CPU)
        for s in range(3)
    ]
    for _ in range(30):
        step = next_tokens(logits.clone(), samplers)
        for row, token in enumerate(step.tokens):
            assert token in logits[row].topk(3).indices.tolist()


def test_a_default_row_is_only_in_the_argmax() -> None:
    logits = torch.randn(4, 50)
    samplers = [RowSampler.for_params(SamplingParams(temperature=0.0), CPU) for _ in range(4)]
    before = logits.clone()
    step = next_tokens(logits, samplers)
    assert step.tokens == before.argmax(dim=-1).tolist()
    assert torch.equal(logits, before), "default rows must not be processed"


def test_a_greedy_row_takes_the_first_of_tied_maxima() -> None:
    """Greedy rows take argmax's token where the largest logit is tied (the first), on a
    vocabulary as wide as the embedded model's, and on a row of one value."""
    logits = torch.randn(3, 49152)
    logits[0, [7, 9000, 40000]] = 50.0
    logits[1, [48000, 12]] = 50.0
    logits[2] = 1.5
    samplers = [RowSampler.for_params(SamplingParams(temperature=0.0), CPU) for _ in range(3)]
    step = next_tokens(logits.clone(), samplers)
    assert step.tokens == logits.argmax(dim=-1).tolist() == [7, 12, 0]
