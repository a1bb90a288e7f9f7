"""Choosing each row's next token from the batch's logits.

Greedy rows share one ``argmax`` over the batch. Sampled rows draw from their own
``torch.Generator``, seeded by the request, so a seeded request gives the same tokens whatever
else shares its batch.

One row's numbers never fail another row: a row whose logits are not finite (a corrupt
adapter) or whose sampling fails is reported in :attr:`StepTokens.failed` and the others get
their tokens as usual.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from arkor.engine.base import SamplingParams

GREEDY_BELOW_TEMPERATURE = 1e-5
"""Temperatures below this decode greedily (as vLLM does): dividing logits by a tinier one
overflows to inf and the softmax to NaN."""

NON_FINITE_MESSAGE = (
    "The model produced non-finite values for this request; the adapter's weights may be "
    "corrupt"
)


class SamplingFailed(Exception):
    """This row's probabilities could not be sampled from."""


@dataclass
class RowSampler:
    temperature: float
    top_p: float
    generator: torch.Generator | None

    @classmethod
    def for_params(cls, params: SamplingParams, device: torch.device) -> RowSampler:
        if not params.temperature >= GREEDY_BELOW_TEMPERATURE:  # NaN too
            return cls(temperature=0.0, top_p=1.0, generator=None)
        generator = torch.Generator(device=device)
        seed = params.seed if params.seed is not None else random.getrandbits(63)
        generator.manual_seed(seed)
        return cls(temperature=params.temperature, top_p=params.top_p, generator=generator)

    @property
    def greedy(self) -> bool:
        return self.generator is None

    def sample(self, logits: torch.Tensor) -> int:
        """Draw one token from a row of logits with temperature and nucleus (top-p) filtering."""
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
            # The most likely token always stays, so top_p <= 0 degrades to greedy.
            sorted_probs[1:] = sorted_probs[1:].masked_fill(before[1:] >= self.top_p, 0.0)
            return int(order[_draw(sorted_probs, self.generator)])
        return _draw(probs, self.generator)


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    total = probs.sum()
    if not bool(torch.isfinite(total)) or float(total) <= 0.0:
        raise SamplingFailed("the token probabilities are not finite")
    return int(torch.multinomial(probs, 1, generator=generator))


@dataclass
class StepTokens:
    """One token per row (a placeholder for failed rows) and the reason each failed row failed."""

    tokens: list[int]
    failed: dict[int, str] = field(default_factory=dict)


def next_tokens(logits: torch.Tensor, samplers: list[RowSampler]) -> StepTokens:
    """``logits`` is ``[rows, vocab]``; returns one token id per row."""
    # -inf is a legitimate mask value; NaN and +inf are not.
    finite = ~(torch.isnan(logits) | torch.isposinf(logits)).any(dim=-1)
    finite = finite.tolist()
    step = StepTokens(logits.argmax(dim=-1).tolist())
    for row, sampler in enumerate(samplers):
        if not finite[row]:
            step.failed[row] = NON_FINITE_MESSAGE
            step.tokens[row] = 0
        elif not sampler.greedy:
            try:
                step.tokens[row] = sampler.sample(logits[row])
            except (SamplingFailed, RuntimeError) as exc:
                step.failed[row] = f"Sampling failed for this request: {exc}"
                step.tokens[row] = 0
    return step
