"""Newcomers prefilled together into a cache of their own, a chunk of columns at a time.

The group's prompts are laid out as one left-padded batch (a group of prompts found whole in
the prefix cache, logits included, has nothing left to feed: it joins as it is). A row whose
leading tokens were found in the prefix cache starts from those keys and values and only its
remainder is fed; the cache is then ``[cached prefixes, right-aligned | remainders,
right-aligned]``, and the attention mask hides the padding of both parts (a hole in the middle
of a row is as good as padding on its left). Positions count only a row's real tokens, so
every token has the position it would have alone.

Feeding the remainder in slices of columns lets the scheduler run a decode step for the
running rows between two slices (chunked prefill): a long prompt never holds them up for
more than one slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from arkor.engine.local.batch import BatchTensors, GrowingLayer, growing_layers, new_cache
from arkor.engine.local.prefix_cache import Layers, PrefixHit


class PrefillGroup:
    def __init__(
        self,
        prompts: Sequence[list[int]],
        hits: Sequence[PrefixHit | None],
        pad_token_id: int,
        device: torch.device,
    ) -> None:
        past = [hit.length if hit else 0 for hit in hits]
        rest = [prompt[skip:] for prompt, skip in zip(prompts, past, strict=True)]
        self.past_width = max(past)
        self.width = max(len(tokens) for tokens in rest)
        self.lengths = [len(prompt) for prompt in prompts]
        size = len(prompts)
        ids = torch.full((size, self.width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((size, self.past_width + self.width), dtype=torch.long)
        positions = torch.zeros((size, self.width), dtype=torch.long)
        for row, (tokens, skip) in enumerate(zip(rest, past, strict=True)):
            start = self.width - len(tokens)
            ids[row, start:] = torch.tensor(tokens, dtype=torch.long)
            mask[row, self.past_width - skip : self.past_width] = 1
            mask[row, self.past_width + start :] = 1
            positions[row, start:] = torch.arange(skip, skip + len(tokens))
        self.ids, self.mask, self.positions = ids.to(device), mask.to(device), positions.to(device)
        # Placeholder inputs until the first answer tokens are chosen (append_step).
        self.last_tokens = torch.tensor([prompt[-1] for prompt in prompts], dtype=torch.long,
                                        device=device)
        self.cache = new_cache(reserve=self.past_width + self.width)
        if self.past_width:
            self._seed_cache(hits)
        self.done = 0
        self.hidden: list[torch.Tensor] = []
        """The decoder's last hidden states per slice, when a row wants prompt logprobs."""

    @property
    def remaining(self) -> int:
        return self.width - self.done

    @property
    def size(self) -> int:
        return int(self.ids.shape[0])

    def next_slice(self, columns: int) -> dict[str, Any]:
        """The forward inputs for the next ``columns`` columns (at least one)."""
        start, end = self.done, min(self.width, self.done + max(1, columns))
        self.done = end
        return {
            "input_ids": self.ids[:, start:end],
            "attention_mask": self.mask[:, : self.past_width + end],
            "position_ids": self.positions[:, start:end],
            "cache": self.cache,
            "use_cache": True,
            "logits_to_keep": 1,
            "prompt": True,  # a prompt slice (decode.LeanDecoder._scripted leaves it alone)
        }

    def tensors(self) -> BatchTensors:
        """The finished group as a batch the running one can take in."""
        lengths = torch.tensor(self.lengths, device=self.mask.device)
        # append_step adds one, so start one short of the first generated token's position.
        return BatchTensors(
            self.cache, self.mask, next_positions=lengths - 1, next_tokens=self.last_tokens
        )

    def prompt_hidden(self) -> torch.Tensor | None:
        return torch.cat(self.hidden, dim=1) if self.hidden else None

    def _seed_cache(self, hits: Sequence[PrefixHit | None]) -> None:
        template = next(hit for hit in hits if hit is not None).layers
        for index, (keys, _) in enumerate(template):
            parts = []
            for hit in hits:
                if hit is None:
                    empty = keys.new_zeros((1, keys.shape[0], 0, keys.shape[-1]))
                    parts.append((empty, empty))
                else:
                    k, v = hit.layers[index]
                    parts.append((k[None], v[None]))
            layer = GrowingLayer(reserve=self.past_width + self.width)
            layer.assign_stacked(parts, self.past_width)
            self.cache.layers.append(layer)


def row_layers(batch: BatchTensors, row: int) -> Layers:
    """Copies of one row's keys and values, its padding left out, in token order."""
    columns = batch.attention_mask[row].nonzero().squeeze(1)
    layers: Layers = []
    for layer in growing_layers(batch.cache):
        keys, values = layer.contents()
        layers.append((keys[row].index_select(1, columns), values[row].index_select(1, columns)))
    return layers
