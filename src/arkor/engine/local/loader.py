"""Loading a base model and its tokenizer, and turning chat messages into prompt token ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from arkor.engine.base import ChatMessage
from arkor.engine.embedded import ensure_embedded_model
from arkor.engine.registry import BaseModelSpec


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
    """

    name: str
    model: PreTrainedModel
    tokenizer: object
    device: torch.device
    max_context: int
    eos_token_ids: frozenset[int]
    pad_token_id: int
    encoder: object
    max_token_chars: int

    def encode_chat(self, messages: tuple[ChatMessage, ...]) -> list[int]:
        conversation = [{"role": m.role, "content": m.content} for m in messages]
        encoded = self.encoder.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(encoded["input_ids"])

    def min_prompt_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        """A lower bound on the prompt's token count, without tokenizing it."""
        return sum(len(m.content) for m in messages) // max(self.max_token_chars, 1)


def load_base_model(spec: BaseModelSpec, *, models_dir: Path, device: torch.device) -> LoadedModel:
    path = ensure_embedded_model(models_dir) if spec.path is None else spec.path
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    config = model.config.get_text_config(decoder=True)
    return LoadedModel(
        name=spec.name,
        model=model,
        tokenizer=tokenizer,
        device=device,
        max_context=int(config.max_position_embeddings),
        eos_token_ids=_eos_token_ids(model, tokenizer),
        pad_token_id=_pad_token_id(tokenizer),
        encoder=AutoTokenizer.from_pretrained(path),
        max_token_chars=_max_token_chars(tokenizer),
    )


def _max_token_chars(tokenizer: object) -> int:
    """Characters in the longest token (byte-level tokens: bytes, which bound characters)."""
    longest = max((len(token) for token in tokenizer.get_vocab()), default=1)
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    longest = max([longest, *(len(str(token)) for token in added.values())])
    return max(longest, 1)


def _eos_token_ids(model: PreTrainedModel, tokenizer: object) -> frozenset[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured is not None:
        ids.update(int(i) for i in configured)
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


def _pad_token_id(tokenizer: object) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0
