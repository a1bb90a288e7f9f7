"""Log-probabilities of chosen tokens and of prompt tokens, with their top alternatives.

Completion logprobs are the ``log_softmax`` of the row's *processed* logits: after
``logit_bias``, penalties, the grammar mask and the ``min_tokens`` EOS mask, before
temperature, top-k, top-p and min-p (what OpenAI reports, and vLLM's ``processed_logprobs``
without temperature). A token the grammar forbids therefore has no probability; such
alternatives (``-inf``) are reported as :data:`FLOOR_LOGPROB`, as vLLM does, so they stay
valid JSON.

Prompt logprobs are the model's own: ``log_softmax`` of the output layer applied to the last
hidden state of every prompt position, for the row's adapter, in chunks so that a long prompt
never materialises ``[length, vocab]`` logits at once.

A token's text is its own bytes, decoded alone; a token whose bytes are not valid UTF-8 on
their own (part of a multi-byte character) is written ``bytes:\\xNN...``, as OpenAI does.
Special tokens are written as their name (``<|im_end|>``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from arkor.engine.base import TokenLogprob, TopLogprob

FLOOR_LOGPROB = -9999.0
PROMPT_CHUNK = 256
"""Prompt positions whose logits are computed at once (256 x 49,152 float32 = 48 MiB)."""


class TokenTexts:
    """Each token id's own text, decoded once and remembered."""

    def __init__(self, decode_bytes: Callable[[list[int]], bytes]) -> None:
        self._decode_bytes = decode_bytes
        self._texts: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        text = self._texts.get(token_id)
        if text is None:
            data = self._decode_bytes([token_id])
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = "bytes:" + "".join(f"\\x{byte:02x}" for byte in data)
            self._texts[token_id] = text
        return text


def _floor(value: float) -> float:
    return value if value > FLOOR_LOGPROB else FLOOR_LOGPROB


def _entry(
    token: int, logprob: float, top_ids: list[int], top_values: list[float], texts: TokenTexts
) -> TokenLogprob:
    top = tuple(
        TopLogprob(token=texts(i), token_id=i, logprob=_floor(v))
        for i, v in zip(top_ids, top_values, strict=True)
    )
    return TokenLogprob(token=texts(token), token_id=token, logprob=_floor(logprob), top=top)


def chosen_logprobs(
    logits: torch.Tensor,
    rows: list[int],
    tokens: list[int],
    tops: list[int],
    texts: TokenTexts,
) -> list[TokenLogprob]:
    """The entry for ``tokens[i]`` chosen in row ``rows[i]``, with ``tops[i]`` alternatives."""
    index = torch.tensor(rows, dtype=torch.long, device=logits.device)
    logprobs = torch.log_softmax(logits.index_select(0, index).float(), dim=-1)
    chosen = logprobs.gather(1, torch.tensor(tokens, device=logits.device)[:, None])[:, 0]
    most = max(tops)
    top_values, top_ids = (
        logprobs.topk(most, dim=-1) if most > 0 else (logprobs[:, :0], logprobs[:, :0].long())
    )
    chosen_list = chosen.tolist()
    values, ids = top_values.tolist(), top_ids.tolist()
    return [
        _entry(tokens[i], chosen_list[i], ids[i][: tops[i]], values[i][: tops[i]], texts)
        for i in range(len(rows))
    ]


def prompt_logprobs(
    hidden: torch.Tensor,
    prompt_ids: Sequence[int],
    top: int,
    head: Callable[[torch.Tensor], torch.Tensor],
    texts: TokenTexts,
) -> tuple[TokenLogprob | None, ...]:
    """One entry per prompt token (the first is None) from its ``[length, hidden]`` states.

    ``head`` maps ``[1, n, hidden]`` states to ``[1, n, vocab]`` logits (the row's output
    layer, adapter included).
    """
    entries: list[TokenLogprob | None] = [None]
    targets = torch.tensor(list(prompt_ids), dtype=torch.long, device=hidden.device)
    for start in range(0, len(prompt_ids) - 1, PROMPT_CHUNK):
        end = min(start + PROMPT_CHUNK, len(prompt_ids) - 1)
        logits = head(hidden[None, start:end])[0]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        following = targets[start + 1 : end + 1]
        chosen = logprobs.gather(1, following[:, None])[:, 0].tolist()
        if top > 0:
            values, ids = logprobs.topk(top, dim=-1)
            top_values, top_ids = values.tolist(), ids.tolist()
        else:
            top_values = top_ids = [[] for _ in chosen]
        for i, token in enumerate(following.tolist()):
            entries.append(_entry(token, chosen[i], top_ids[i], top_values[i], texts))
    return tuple(entries)
