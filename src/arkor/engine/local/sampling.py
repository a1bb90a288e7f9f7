"""Choosing each row's next token from the batch's logits.

Greedy rows share one ``argmax`` over the batch. Sampled rows draw from their own
``torch.Generator``, seeded by the request, so a seeded request gives the same tokens whatever
else shares its batch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from arkor.engine.base import SamplingParams


@dataclass
class RowSampler:
    temperature: float
    top_p: float
    generator: torch.Generator | None

    @classmethod
    def for_params(cls, params: SamplingParams, device: torch.device) -> RowSampler:
        if params.temperature <= 0:
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
            choice = torch.multinomial(sorted_probs, 1, generator=self.generator)
            return int(order[choice])
        return int(torch.multinomial(probs, 1, generator=self.generator))


def next_tokens(logits: torch.Tensor, samplers: list[RowSampler]) -> list[int]:
    """``logits`` is ``[rows, vocab]``; returns one token id per row."""
    chosen = logits.argmax(dim=-1).tolist()
    for row, sampler in enumerate(samplers):
        if not sampler.greedy:
            chosen[row] = sampler.sample(logits[row])
    return chosen
