"""The running batch's tensors: a left-padded KV cache that rows join and leave between steps.

Every row's tokens end at the same cache column, so one decode step appends one column for
all rows. A row with a shorter history has padding on its left, masked out by
``attention_mask``; its ``position_ids`` count only its real tokens, so rotary positions are
the ones it would have alone. This is the technique of TGI's original HF path
(``CausalLMBatch.filter`` / ``concatenate``):

- join: newcomers are prefilled together as their own left-padded batch, then both caches
  are left-padded to the longer length and stacked on the batch axis;
- leave: the kept rows are selected, and the columns that are padding for every kept row are
  trimmed from the left.

A row may also have padding in the middle (a prompt that started from the prefix cache: see
:mod:`prefill`); the mask hides it like any other padding.

The cache layers keep spare columns at the end, so appending a token each step writes in
place instead of copying the whole cache (``DynamicLayer`` concatenates every step).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import cast

import torch
from transformers.cache_utils import Cache, DynamicLayer

SPARE_COLUMNS = 64


class _Columns:
    """A :class:`GrowingLayer`'s ``keys`` or ``values``: the first ``length`` columns of its
    buffer, as a view made when read; it cannot be assigned past the buffer (None only,
    which ``CacheLayerMixin.__init__`` sets)."""

    def __init__(self, buffer: str) -> None:
        self.buffer = buffer

    def __get__(self, layer: GrowingLayer | None, owner: type | None = None) -> torch.Tensor | None:
        if layer is None:
            return None
        found: torch.Tensor | None = getattr(layer, self.buffer)
        return None if found is None else found[:, :, : layer._length]

    def __set__(self, layer: GrowingLayer, value: torch.Tensor | None) -> None:
        if value is not None:
            raise AttributeError("a GrowingLayer's keys and values are views of its buffers: "
                                 "assign them with assign(), shorten them with truncate()")


# transformers' DynamicLayer is not annotated; the two calls into it are the only untyped ones.
class GrowingLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """A cache layer whose ``keys``/``values`` are views into a buffer with spare columns.

    The views are made when read (transformers reads them; a scripted decode step writes its
    columns itself and never does): made at every step, two slicing calls for each of 30
    layers were ~0.1 ms of a one-row step's Python."""

    def __init__(self, reserve: int = 0) -> None:
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None
        self._length = 0
        super().__init__()  # type: ignore[no-untyped-call]
        self.reserve = reserve  # columns its buffer has room for from the start

    keys = _Columns("_key_buffer")
    values = _Columns("_value_buffer")

    def reset(self) -> None:
        self._key_buffer = self._value_buffer = None
        self._length = 0
        super().reset()

    def get_seq_length(self) -> int:
        return self._length if self.is_initialized else 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        added = key_states.shape[-2]
        if self._key_buffer is None:
            self.assign(key_states, value_states)
        else:
            if self._length + added > self._key_buffer.shape[-2]:
                self.assign(*self.contents(), extra=added)
            key_buffer, value_buffer = self._buffers()
            end = self._length + added
            key_buffer[:, :, self._length : end] = key_states
            value_buffer[:, :, self._length : end] = value_states
            self._set_length(end)
        return self.contents()

    def room_for(self, added: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The key and value buffers, grown as :meth:`update` grows them to take ``added`` more
        columns, for a caller that writes the columns itself (then calls :meth:`advance`);
        None while the layer holds nothing."""
        if self._key_buffer is None:
            return None
        if self._length + added > self._key_buffer.shape[-2]:
            self.assign(*self.contents(), extra=added)
        return self._buffers()

    def advance(self, added: int) -> None:
        """Take in the ``added`` columns written past the end into :meth:`room_for`'s buffers."""
        self._set_length(self._length + added)

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached keys and values (views of the first ``length`` columns)."""
        key_buffer, value_buffer = self._buffers()
        return key_buffer[:, :, : self._length], value_buffer[:, :, : self._length]

    @property
    def length(self) -> int:
        return self._length

    def truncate(self, length: int) -> None:
        """Forget the columns past ``length`` (a pass that failed half-way wrote them)."""
        self._set_length(min(length, self._length))

    def _buffers(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._key_buffer is None or self._value_buffer is None:
            raise RuntimeError("the cache layer is empty")
        return self._key_buffer, self._value_buffer

    def assign(self, keys: torch.Tensor, values: torch.Tensor, *, extra: int = 0) -> None:
        """Replace the contents with copies of ``keys``/``values`` plus spare columns."""
        self.assign_stacked([(keys, values)], keys.shape[-2], extra=extra)

    def assign_stacked(
        self, parts: list[tuple[torch.Tensor, torch.Tensor]], length: int, *, extra: int = 0
    ) -> None:
        """Stack ``parts`` on the batch axis, each right-aligned (left-padded) to ``length``."""
        first_keys, first_values = parts[0]
        batch = sum(keys.shape[0] for keys, _ in parts)
        heads = first_keys.shape[1]
        capacity = max(length + extra + SPARE_COLUMNS, self.reserve)
        # Only the first ``length`` columns are ever read (the rest are written first, by
        # update), so only they are zeroed (their padding must be finite: a masked column
        # still goes through the attention's products). A prefill group's reserve is its
        # whole width: zeroing all of it (~30 MB for a 1,340-token prompt) took ~6 ms.
        key_buffer = first_keys.new_empty((batch, heads, capacity, first_keys.shape[-1]))
        value_buffer = first_values.new_empty((batch, heads, capacity, first_values.shape[-1]))
        key_buffer[:, :, :length].zero_()
        value_buffer[:, :, :length].zero_()
        row = 0
        for keys, values in parts:
            rows, start = keys.shape[0], length - keys.shape[-2]
            key_buffer[row : row + rows, :, start:length] = keys
            value_buffer[row : row + rows, :, start:length] = values
            row += rows
        self._key_buffer, self._value_buffer = key_buffer, value_buffer
        self.dtype, self.device, self.is_initialized = first_keys.dtype, first_keys.device, True
        self._set_length(length)

    def _set_length(self, length: int) -> None:
        self._length = length


def new_cache(reserve: int = 0) -> Cache:
    """An empty cache of :class:`GrowingLayer` s, each with room for ``reserve`` columns
    (a prefill group's whole width, so its slices never copy the cache to grow it)."""
    # Cache only calls it to make a layer; a partial does what the class would.
    make = cast(type[GrowingLayer], functools.partial(GrowingLayer, reserve))
    return Cache(layer_class_to_replicate=make)


class BatchTensors:
    """Cache, mask and next inputs of a left-padded batch; row ``i`` is ``rows[i]`` upstream."""

    def __init__(
        self,
        cache: Cache,
        attention_mask: torch.Tensor,
        next_positions: torch.Tensor,
        next_tokens: torch.Tensor,
    ) -> None:
        self.cache = cache
        self.attention_mask = attention_mask
        self.next_positions = next_positions
        self.next_tokens = next_tokens

    @property
    def size(self) -> int:
        return self.attention_mask.shape[0]

    @property
    def length(self) -> int:
        return self.attention_mask.shape[1]

    @staticmethod
    def prompts(
        prompts: Sequence[list[int]], pad_token_id: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded ``input_ids``, ``attention_mask`` and ``position_ids`` for a prefill."""
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return ids.to(device), mask.to(device), positions.to(device)

    def append_step(self, tokens: list[int]) -> None:
        """Record the tokens chosen this step as the next inputs (the cache grew in forward)."""
        self.next_tokens = torch.tensor(tokens, dtype=torch.long, device=self.attention_mask.device)
        self.next_positions = self.next_positions + 1

    def step_inputs(self) -> dict[str, object]:
        ones = self.attention_mask.new_ones((self.size, 1))
        self.attention_mask = torch.cat([self.attention_mask, ones], dim=1)
        return {
            "input_ids": self.next_tokens[:, None],
            "attention_mask": self.attention_mask,
            "position_ids": self.next_positions[:, None],
            "cache": self.cache,
            "use_cache": True,
        }

    def mark(self) -> tuple[torch.Tensor, list[int]]:
        """What :meth:`rewind` goes back to: the mask and each cache layer's length."""
        return self.attention_mask, [layer.length for layer in growing_layers(self.cache)]

    def rewind(self, mark: tuple[torch.Tensor, list[int]]) -> None:
        """Back to ``mark``, taken before a step whose pass failed: as if it had not run."""
        self.attention_mask, lengths = mark
        layers = growing_layers(self.cache)
        del layers[len(lengths):]
        for layer, length in zip(layers, lengths, strict=True):
            layer.truncate(length)

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in that order) and trim the padding they all share."""
        index = torch.tensor(rows, dtype=torch.long, device=self.attention_mask.device)
        mask = self.attention_mask.index_select(0, index)
        # A row may have holes (a prefix-cache hit leaves padding between its cached part and
        # the rest), so the first column any kept row uses is found, not computed from counts.
        used = mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else self.length
        self.attention_mask = mask[:, start:].contiguous()
        self.next_positions = self.next_positions.index_select(0, index)
        self.next_tokens = self.next_tokens.index_select(0, index)
        for layer in growing_layers(self.cache):
            keys, values = layer.contents()
            layer.assign(
                keys.index_select(0, index)[:, :, start:],
                values.index_select(0, index)[:, :, start:],
            )

    def extend(self, other: BatchTensors) -> None:
        """Append ``other``'s rows after ours, left-padding the shorter cache."""
        length = max(self.length, other.length)
        self.attention_mask = torch.cat(
            [_pad_left(self.attention_mask, length), _pad_left(other.attention_mask, length)], dim=0
        )
        self.next_positions = torch.cat([self.next_positions, other.next_positions])
        self.next_tokens = torch.cat([self.next_tokens, other.next_tokens])
        pairs = zip(growing_layers(self.cache), growing_layers(other.cache), strict=True)
        for mine, theirs in pairs:
            mine.assign_stacked([mine.contents(), theirs.contents()], length)


def growing_layers(cache: Cache) -> list[GrowingLayer]:
    """The cache's layers: :func:`new_cache` makes every one a :class:`GrowingLayer`."""
    return cast(list[GrowingLayer], cache.layers)


def _pad_left(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Pad a ``[batch, seq]`` mask on the left with zeros."""
    axis = 1
    missing = length - tensor.shape[axis]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=axis)
