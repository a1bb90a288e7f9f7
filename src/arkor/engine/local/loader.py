"""Loading a base model and its tokenizers, and turning requests into prompt token ids."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from llguidance import LLTokenizer
from llguidance.hf import from_tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from arkor.engine.base import GenerationRequest, GrammarError
from arkor.engine.embedded import ensure_embedded_model
from arkor.engine.grammar import GrammarCache
from arkor.engine.local.logprobs import TokenTexts
from arkor.engine.local.prompt import encode_request, prompt_characters
from arkor.engine.local.quantize import apply_precision
from arkor.engine.precision import DEFAULT_PRECISION
from arkor.engine.registry import BaseModelSpec

logger = logging.getLogger(__name__)


def pick_device(requested: str | None) -> torch.device:
    if requested is not None:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class LoadedModel:
    """A base model ready to serve: weights on ``device``, tokenizers, and its limits.

    The Rust tokenizer is not safe to share between threads, so there are two: ``tokenizer``
    decodes completions on the scheduler thread and ``encoder`` turns prompts into ids on the
    engine's one encoding thread (never on the event loop). A long prompt being encoded
    therefore never holds up another request's decoding. ``max_token_chars`` is the longest
    token's text: a prompt of ``n`` characters has at least ``n / max_token_chars`` tokens,
    which lets a hopeless prompt be refused before it is tokenized.

    ``vocab_width`` is the width of the model's logits (it can exceed the tokenizer's
    vocabulary: padding rows of the output layer). ``grammars`` compiles and caches llguidance
    grammars for this tokenizer (None when the tokenizer cannot be used by llguidance, a slow
    tokenizer say); ``token_texts`` names tokens for logprobs. ``precision`` is the one the
    weights were loaded at (never ``auto``).
    """

    name: str
    model: PreTrainedModel
    tokenizer: Any
    device: torch.device
    max_context: int
    eos_token_ids: frozenset[int]
    pad_token_id: int
    encoder: Any
    max_token_chars: int
    vocab_width: int
    grammars: GrammarCache | None
    token_texts: TokenTexts
    precision: str = "float32"

    def encode(self, request: GenerationRequest) -> list[int]:
        """Prompt token ids (runs on the engine's encoding thread)."""
        return encode_request(self.encoder, request)

    def min_prompt_tokens(self, request: GenerationRequest) -> int:
        """A lower bound on the prompt's token count, without tokenizing it."""
        return prompt_characters(request) // max(self.max_token_chars, 1)

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary (what grammar masks cover)."""
        return self.grammars.tokenizer.vocab_size if self.grammars else self.vocab_width

    def grammar_cache(self) -> GrammarCache:
        if self.grammars is None:
            raise GrammarError(
                f"Grammars are not available for {self.name}: llguidance cannot read its "
                "tokenizer (a fast, tokenizer.json tokenizer is needed)"
            )
        return self.grammars


def load_base_model(
    spec: BaseModelSpec,
    *,
    models_dir: Path,
    device: torch.device,
    grammar_executor: Executor,
    precision: str = DEFAULT_PRECISION,
) -> LoadedModel:
    """Load ``spec`` onto ``device`` at ``precision`` (see :mod:`arkor.engine.precision`)."""
    path = ensure_embedded_model(models_dir) if spec.path is None else spec.path
    tokenizer = AutoTokenizer.from_pretrained(path)
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    resolved = apply_precision(model, precision, device)
    logger.info("base model %s: precision %s (setting %s) on %s", spec.name, resolved,
                precision, device)
    model = model.to(device).eval()
    config = model.config.get_text_config(decoder=True)
    eos_token_ids = _eos_token_ids(model, tokenizer)
    ll_tokenizer = _ll_tokenizer(tokenizer, eos_token_ids)
    grammars = (
        GrammarCache(ll_tokenizer, executor=grammar_executor) if ll_tokenizer is not None else None
    )
    return LoadedModel(
        name=spec.name,
        model=model,
        tokenizer=tokenizer,
        device=device,
        max_context=int(config.max_position_embeddings),
        eos_token_ids=eos_token_ids,
        pad_token_id=_pad_token_id(tokenizer),
        # A deep copy has a Rust tokenizer of its own (half the time of reading it again)
        encoder=copy.deepcopy(tokenizer),
        max_token_chars=_max_token_chars(tokenizer),
        vocab_width=int(model.get_output_embeddings().weight.shape[0]),
        grammars=grammars,
        token_texts=TokenTexts(
            ll_tokenizer.decode_bytes if ll_tokenizer is not None else _hf_bytes(tokenizer)
        ),
        precision=resolved,
    )


def _ll_tokenizer(tokenizer: Any, eos_token_ids: frozenset[int]) -> LLTokenizer | None:
    """llguidance's view of the tokenizer (about 0.4 s), or None when it cannot read it."""
    try:
        return from_tokenizer(tokenizer, eos_token=sorted(eos_token_ids) or None)
    except Exception as exc:
        logger.warning("grammars are unavailable for this tokenizer: %s", exc)
        return None


def _hf_bytes(tokenizer: Any) -> Callable[[list[int]], bytes]:
    def decode_bytes(ids: list[int]) -> bytes:
        return str(tokenizer.decode(ids)).encode("utf-8")

    return decode_bytes


def _max_token_chars(tokenizer: Any) -> int:
    """Characters in the longest token (byte-level tokens: bytes, which bound characters)."""
    longest = max((len(token) for token in tokenizer.get_vocab()), default=1)
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    longest = max([longest, *(len(str(token)) for token in added.values())])
    return max(longest, 1)


def _eos_token_ids(model: PreTrainedModel, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured is not None:
        ids.update(int(i) for i in configured)
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


def _pad_token_id(tokenizer: Any) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0
