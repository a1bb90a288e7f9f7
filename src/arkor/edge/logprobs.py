"""The engine's token log-probabilities in the three OpenAI shapes.

- Chat and Responses: one object per token, ``{"token", "logprob", "bytes", "top_logprobs":
  [{"token", "logprob", "bytes"}]}``.
- Legacy completions: parallel arrays ``tokens``, ``token_logprobs``, ``top_logprobs`` (a
  ``{token: logprob}`` map per position) and ``text_offset``.

A token whose bytes do not decode alone is written ``bytes:\\xNN`` by the engine, as OpenAI
writes it; ``bytes`` then holds the raw bytes. A log-probability of minus infinity (a token
the grammar or ``logit_bias`` ruled out) is reported as -9999.0, as OpenAI does, since JSON
has no infinity.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from arkor.engine.base import TokenLogprob, TopLogprob

FLOOR = -9999.0
_BYTE = re.compile(r"\\x([0-9a-fA-F]{2})")
RAW_PREFIX = "bytes:"


def token_bytes(token: str) -> list[int]:
    if token.startswith(RAW_PREFIX):
        return [int(hex_pair, 16) for hex_pair in _BYTE.findall(token[len(RAW_PREFIX):])]
    return list(token.encode("utf-8"))


def finite(logprob: float) -> float:
    return logprob if math.isfinite(logprob) else FLOOR


def _alternative(top: TopLogprob | TokenLogprob) -> dict[str, Any]:
    return {"token": top.token, "logprob": finite(top.logprob), "bytes": token_bytes(top.token)}


def chat_items(tokens: Iterable[TokenLogprob]) -> list[dict[str, Any]]:
    """Chat's ``logprobs.content`` (and Responses' ``logprobs``) items."""
    return [{**_alternative(t), "top_logprobs": [_alternative(top) for top in t.top]}
            for t in tokens]


def completion_block(tokens: Sequence[TokenLogprob | None], *, offset: int = 0
                     ) -> dict[str, Any]:
    """Legacy ``logprobs``: ``None`` entries (a prompt's first token) have no log-probability;
    ``offset`` is where the first token starts in the returned text."""
    block: dict[str, Any] = {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                             "text_offset": []}
    for item in tokens:
        if item is None:
            block["tokens"].append("")
            block["token_logprobs"].append(None)
            block["top_logprobs"].append(None)
            block["text_offset"].append(offset)
            continue
        block["tokens"].append(item.token)
        block["token_logprobs"].append(finite(item.logprob))
        block["top_logprobs"].append({top.token: finite(top.logprob) for top in item.top})
        block["text_offset"].append(offset)
        offset += 0 if item.token.startswith(RAW_PREFIX) else len(item.token)
    return block


def merge_completion_blocks(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    return {key: first[key] + second[key] for key in first}
