"""Prompt KV kept across requests, so a prefix seen before is not computed twice.

Each entry is one token sequence that has been through the model (a prompt, or a finished
conversation: prompt plus answer) with its keys and values for every layer, stored per
adapter: the same tokens give other keys and values under another adapter. A new prompt
takes the longest common prefix with any entry of its adapter and only its remainder is
prefilled. Entries are evicted least recently used first once their bytes pass the budget;
an entry whose tokens are a prefix of a newer entry's is replaced by it.

An entry also keeps the logits that followed its prompt (the distribution of the first
answer token), by prompt length, and an entry that replaces it inherits them: a prompt seen
before in full under the same adapter (:meth:`PrefixCache.lookup_whole`) needs no forward
pass at all for its first token. A prefix with new tokens after it still computes those.

Only the scheduler thread touches the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

Layers = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer, keys and values of one sequence: ``[heads, tokens, head_dim]`` each."""


@dataclass
class _Entry:
    adapter: str
    tokens: np.ndarray
    layers: Layers
    nbytes: int
    logits: dict[int, torch.Tensor] = field(default_factory=dict)  # by prompt length


@dataclass(frozen=True)
class PrefixHit:
    """``length`` leading tokens of a prompt whose keys and values are in ``layers``; for a
    whole prompt (:meth:`PrefixCache.lookup_whole`), ``logits`` of its next token."""

    length: int
    layers: Layers
    logits: torch.Tensor | None = None


class PrefixCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next_id = 0
        self.bytes = 0
        self.hits = 0
        self.whole_hits = 0  # prompts whose first token needed no forward pass
        self.tokens_reused = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def stores(self) -> int:
        """How many entries were ever stored (a prompt that was not whole in the cache can
        only become so by a store)."""
        return self._next_id

    def lookup(self, adapter: str, tokens: list[int], *, minimum: int = 1) -> PrefixHit | None:
        """The longest cached prefix of ``tokens`` under ``adapter``, leaving at least one token
        of ``tokens`` to compute (its logits are needed); None below ``minimum`` tokens."""
        if not self._entries or len(tokens) < 2:
            return None
        wanted = np.asarray(tokens, dtype=np.int64)
        best_id, best = None, 0
        for entry_id, entry in self._entries.items():
            if entry.adapter != adapter:
                continue
            length = _common_prefix(entry.tokens, wanted)
            if length > best:
                best_id, best = entry_id, length
        best = min(best, len(tokens) - 1)
        if best_id is None or best < minimum:
            return None
        return self._hit(best_id, best)

    def lookup_whole(self, adapter: str, tokens: list[int]) -> PrefixHit | None:
        """All of ``tokens`` under ``adapter``, with the logits that followed them, when an
        entry holds both (a prompt served before); None otherwise."""
        found = self._whole(adapter, tokens)
        if found is None:
            return None
        entry_id, logits = found
        self.whole_hits += 1
        return self._hit(entry_id, len(tokens), logits)

    def holds_whole(self, adapter: str, tokens: list[int]) -> bool:
        """Whether :meth:`lookup_whole` would find ``tokens``; changes nothing (no counter,
        no recency)."""
        return self._whole(adapter, tokens) is not None

    def _whole(self, adapter: str, tokens: list[int]) -> tuple[int, torch.Tensor] | None:
        """The newest entry holding all of ``tokens`` and the logits that followed them."""
        if not self._entries or not tokens:
            return None
        length = len(tokens)
        wanted: np.ndarray | None = None
        for entry_id, entry in reversed(self._entries.items()):
            logits = entry.logits.get(length)
            if entry.adapter != adapter or logits is None:
                continue
            if wanted is None:
                wanted = np.asarray(tokens, dtype=np.int64)
            if _common_prefix(entry.tokens, wanted) == length:
                return entry_id, logits
        return None

    def _hit(self, entry_id: int, length: int, logits: torch.Tensor | None = None) -> PrefixHit:
        """The first ``length`` tokens of an entry, now its most recently used."""
        self._entries.move_to_end(entry_id)
        self.hits += 1
        self.tokens_reused += length
        layers = self._entries[entry_id].layers
        return PrefixHit(length, [(k[:, :length], v[:, :length]) for k, v in layers], logits)

    def store(self, adapter: str, tokens: list[int], layers: Layers,
              logits: torch.Tensor | None = None) -> None:
        """Keep ``layers`` (owned by the cache from now on) for ``tokens`` under ``adapter``,
        and ``logits`` (1-D, float32), those of the token after them, when given."""
        kept = {len(tokens): logits} if logits is not None else {}
        nbytes = sum(k.nbytes + v.nbytes for k, v in layers)
        if not self.enabled or nbytes > self.max_bytes or not tokens:
            return
        array = np.asarray(tokens, dtype=np.int64)
        for entry_id, entry in list(self._entries.items()):
            if entry.adapter == adapter and len(entry.tokens) <= len(array) and (
                _common_prefix(entry.tokens, array) == len(entry.tokens)
            ):
                kept = {**entry.logits, **kept}  # the new entry covers it, logits too
                self._remove(entry_id)
        nbytes += sum(t.nbytes for t in kept.values())
        self._entries[self._next_id] = _Entry(adapter, array, layers, nbytes, kept)
        self._next_id += 1
        self.bytes += nbytes
        while self.bytes > self.max_bytes:
            self._remove(next(iter(self._entries)))

    def drop_adapter(self, adapter: str) -> None:
        for entry_id, entry in list(self._entries.items()):
            if entry.adapter == adapter:
                self._remove(entry_id)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def _remove(self, entry_id: int) -> None:
        self.bytes -= self._entries.pop(entry_id).nbytes


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n
