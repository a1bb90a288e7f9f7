"""The sampling fields of a request (OpenAI's and vLLM's) → :class:`SamplingParams`.

OpenAI: ``temperature`` 0-2 (0 is greedy), ``top_p`` (0, 1], ``max_completion_tokens`` /
``max_tokens``, ``seed`` (signed 64-bit), ``stop`` (a string or up to 16),
``presence_penalty`` / ``frequency_penalty`` -2..2, ``logit_bias`` (token id → -100..100).
vLLM's extensions: ``top_k`` (-1 or 0 is off), ``min_p`` 0-1, ``repetition_penalty``
(0, 2], ``min_tokens``, ``ignore_eos``. ``logprobs`` and the grammar are set by the route
(:func:`with_output`).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from arkor.edge.errors import bad
from arkor.edge.fields import boolean, integer, number, obj
from arkor.edge.structured import Constraint
from arkor.engine.base import SamplingParams

MAX_STOP_SEQUENCES = 16
SEED_RANGE = (-(2**63), 2**63 - 1)
PENALTY_RANGE = (-2.0, 2.0)
LOGIT_BIAS_RANGE = (-100.0, 100.0)
MAX_TOKEN_ID = 2**31 - 1
_TOKEN_ID = re.compile(r"0|[1-9][0-9]{0,9}")
CHAT_MAX_TOKENS = ("max_completion_tokens", "max_tokens")


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise bad("stop must be a non-empty string or an array of them", "stop",
                  "invalid_type")
    if len(stop) > MAX_STOP_SEQUENCES:
        raise bad(f"stop takes at most {MAX_STOP_SEQUENCES} sequences", "stop")
    return tuple(stop)


def _logit_bias(body: dict[str, Any]) -> tuple[tuple[int, float], ...]:
    """Keys are token ids written as decimal strings; the engine checks them against the
    model's vocabulary."""
    bias = obj(body, "logit_bias")
    if not bias:
        return ()
    pairs = []
    for key in bias:
        if not _TOKEN_ID.fullmatch(key) or int(key) > MAX_TOKEN_ID:
            raise bad(f"logit_bias keys are token ids (0, 1, 2, ...); {key[:40]!r} is not",
                      "logit_bias")
        low, high = LOGIT_BIAS_RANGE
        pairs.append((int(key), number(bias, key, low, high, param="logit_bias") or 0.0))
    return tuple(sorted(pairs))


def _max_tokens(body: dict[str, Any], names: tuple[str, ...], low: int) -> int | None:
    for name in names:
        value = integer(body, name, low)
        if value is not None:
            return value
    return None


def parse_sampling(body: dict[str, Any], *, max_tokens_names: tuple[str, ...] = CHAT_MAX_TOKENS,
                   min_max_tokens: int = 1) -> SamplingParams:
    """Every sampling field of ``body``; absent ones keep :class:`SamplingParams` defaults."""
    temperature = number(body, "temperature", 0.0, 2.0)
    top_p = number(body, "top_p", 0.0, 1.0)
    if top_p == 0.0:
        raise bad("top_p must be greater than 0", "top_p")
    max_tokens = _max_tokens(body, max_tokens_names, min_max_tokens)
    top_k = integer(body, "top_k", -1)
    repetition = number(body, "repetition_penalty", 0.0, 2.0)
    if repetition == 0.0:
        raise bad("repetition_penalty must be greater than 0 (1 is off)", "repetition_penalty")
    min_tokens = integer(body, "min_tokens", 0) or 0
    if max_tokens is not None and min_tokens > max_tokens:
        raise bad(f"min_tokens ({min_tokens}) is more than max_tokens ({max_tokens})",
                  "min_tokens")
    for name in ("use_beam_search",):
        if body.get(name):
            raise bad(f"{name} is not supported", name, "unsupported_parameter")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if temperature is None else temperature,
        top_p=1.0 if top_p is None else top_p,
        seed=integer(body, "seed", *SEED_RANGE),
        stop=_stop(body),
        top_k=max(top_k or 0, 0),
        min_p=number(body, "min_p", 0.0, 1.0) or 0.0,
        presence_penalty=number(body, "presence_penalty", *PENALTY_RANGE) or 0.0,
        frequency_penalty=number(body, "frequency_penalty", *PENALTY_RANGE) or 0.0,
        repetition_penalty=1.0 if repetition is None else repetition,
        logit_bias=_logit_bias(body),
        min_tokens=min_tokens,
        ignore_eos=boolean(body, "ignore_eos", False),
    )


def with_output(sampling: SamplingParams, *, logprobs: int | None,
                constraint: Constraint | None) -> SamplingParams:
    """``sampling`` reporting ``logprobs`` alternatives and masked to ``constraint``."""
    return replace(sampling, logprobs=logprobs,
                   grammar=None if constraint is None else constraint.grammar)
