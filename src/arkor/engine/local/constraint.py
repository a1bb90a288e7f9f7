"""Grammar-constrained rows: llguidance token masks applied inside the batched sampler.

Each constrained row holds an ``LLMatcher`` (a copy of the compiled grammar, see
``arkor.engine.grammar``). Every step, the matchers of the constrained rows write their
allowed-token bitmasks into one ``[rows, words]`` int32 array (about 25 us a row), which is
unpacked into one boolean array and applied with an in-place ``masked_fill`` per constrained
row (about 0.1 ms a row for a 49,152-token vocabulary); free rows are not touched. The
model's logits can be wider than the tokenizer's vocabulary (padding rows of the output
embedding): those columns are always masked for constrained rows.

EOS is allowed only where the grammar accepts (the matcher says so in its mask). A row
under ``min_tokens`` has EOS cleared from its mask too, unless EOS is all the grammar allows.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from llguidance import LLMatcher
from llguidance.numpy import fill_next_token_bitmask

GRAMMAR_REJECTED_TOKEN = "The grammar could not follow the model's output"
NO_ALLOWED_TOKEN = "The grammar allows no token this model can produce here"


class Constraint:
    """One row's matcher; the scheduler feeds it every token the row accepts."""

    def __init__(self, matcher: LLMatcher) -> None:
        self.matcher = matcher

    @property
    def done(self) -> bool:
        """The grammar is complete: nothing but EOS could follow."""
        return bool(self.matcher.is_stopped())

    def consume(self, token: int) -> str | None:
        """Advance past ``token``; the reason when the matcher refuses it (None when fine)."""
        if self.matcher.is_stopped():
            return None
        if not self.matcher.consume_token(token):
            return f"{GRAMMAR_REJECTED_TOKEN}: {self.matcher.get_error()}"
        return None


def apply_constraints(
    logits: torch.Tensor,
    rows: list[int],
    constraints: list[Constraint],
    *,
    vocab_size: int,
    hold_eos: list[bool],
    eos_token_ids: Iterable[int],
) -> dict[int, str]:
    """Mask ``logits[rows[i]]`` to what ``constraints[i]`` allows, in place.

    ``vocab_size`` is the tokenizer's (the width of the matchers' masks). Returns the rows
    that cannot continue (a matcher in error, or nothing allowed), with the reason.
    """
    failed: dict[int, str] = {}
    words = (vocab_size + 31) // 32
    bitmask = np.zeros((len(rows), words), dtype=np.int32)
    for i, constraint in enumerate(constraints):
        fill_next_token_bitmask(constraint.matcher, bitmask, i)
        if constraint.matcher.is_error():
            failed[rows[i]] = f"{GRAMMAR_REJECTED_TOKEN}: {constraint.matcher.get_error()}"
    _hold_eos(bitmask, hold_eos, [e for e in eos_token_ids if 0 <= e < vocab_size])
    width = logits.shape[1]
    covered = min(width, words * 32)
    unpacked = np.unpackbits(bitmask.view(np.uint8), axis=1, bitorder="little")[:, :covered]
    some = [bool(unpacked[i].any()) for i in range(len(rows))]
    np.logical_not(unpacked, out=unpacked)
    blocked = torch.from_numpy(unpacked).view(torch.bool).to(logits.device)
    for i, row in enumerate(rows):
        logits[row, :covered].masked_fill_(blocked[i], float("-inf"))
        if covered < width:
            logits[row, covered:] = float("-inf")
        if not some[i]:
            failed.setdefault(row, NO_ALLOWED_TOKEN)
    return failed


def _hold_eos(bitmask: np.ndarray, hold: list[bool], eos_ids: list[int]) -> None:
    """Clear EOS from the held rows' masks, unless that would leave them nothing."""
    if not eos_ids or not any(hold):
        return
    words = bitmask.view(np.uint32)
    for i, held in enumerate(hold):
        if not held:
            continue
        before = words[i].copy()
        for eos in eos_ids:
            words[i, eos // 32] &= np.uint32(~(1 << (eos % 32)) & 0xFFFFFFFF)
        if not words[i].any():
            words[i] = before
