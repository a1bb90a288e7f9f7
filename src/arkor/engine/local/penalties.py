"""Repetition, presence and frequency penalties, with vLLM's semantics, over many rows at once.

- ``repetition_penalty`` (1 = off) divides the positive logits and multiplies the negative
  ones of every token seen in the prompt or the completion so far;
- ``frequency_penalty`` subtracts ``penalty * count`` and ``presence_penalty`` subtracts
  ``penalty`` once, for every token of the completion so far (OpenAI's, -2..2).

Each row keeps its completion's token counts as a vocabulary-wide vector updated in place
(one element per step), and the rows that have penalties are stacked and penalised in one
go each step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from arkor.engine.base import SamplingParams


class Penalties:
    """One row's penalty settings and the token counts they read."""

    def __init__(
        self,
        params: SamplingParams,
        *,
        vocab_width: int,
        prompt_ids: Sequence[int],
        device: torch.device,
    ) -> None:
        self.presence = float(params.presence_penalty)
        self.frequency = float(params.frequency_penalty)
        self.repetition = float(params.repetition_penalty)
        self.counts = torch.zeros(vocab_width, dtype=torch.float32, device=device)
        self.prompt_seen: torch.Tensor | None = None
        if self.repetition != 1.0:
            seen = torch.zeros(vocab_width, dtype=torch.bool, device=device)
            ids = [i for i in prompt_ids if 0 <= i < vocab_width]
            if ids:
                seen[torch.tensor(ids, dtype=torch.long, device=device)] = True
            self.prompt_seen = seen

    @staticmethod
    def wanted(params: SamplingParams) -> bool:
        return (
            params.presence_penalty != 0.0
            or params.frequency_penalty != 0.0
            or params.repetition_penalty != 1.0
        )

    def add(self, token: int) -> None:
        """Count a token of the completion."""
        if 0 <= token < self.counts.shape[0]:
            self.counts[token] += 1.0


def apply_penalties(logits: torch.Tensor, rows: list[int], penalties: list[Penalties]) -> None:
    """Penalise ``logits[rows[i]]`` by ``penalties[i]``, in place."""
    index = torch.tensor(rows, dtype=torch.long, device=logits.device)
    sub = logits.index_select(0, index).float()
    counts = torch.stack([p.counts for p in penalties])
    used = counts > 0
    if any(p.repetition != 1.0 for p in penalties):
        repetition = torch.tensor([p.repetition for p in penalties], device=logits.device)[:, None]
        seen = used.clone()
        for i, p in enumerate(penalties):
            if p.prompt_seen is not None:
                seen[i] |= p.prompt_seen
        penalised = torch.where(sub > 0, sub / repetition, sub * repetition)
        sub = torch.where(seen, penalised, sub)
    frequency = torch.tensor([p.frequency for p in penalties], device=logits.device)[:, None]
    presence = torch.tensor([p.presence for p in penalties], device=logits.device)[:, None]
    sub = sub - frequency * counts - presence * used.float()
    logits.index_copy_(0, index, sub.to(logits.dtype))
