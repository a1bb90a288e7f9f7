"""Conversations to token ids and labels through the base model's own chat template.

Only assistant turns are trained when ``responses_only`` is set: each assistant message's
content and the end-of-turn token that follows it (``<|im_end|>`` for ChatML) keep their ids
as labels; everything else is ``-100``. The spans are found by rendering the conversation
prefix by prefix, so any template that renders prefixes as prefixes works, and the trained
tokens are exactly those the model must produce after the generation prompt at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from arkor.training.dataset import Conversation
from arkor.training.errors import TrainingError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels[1:])


def _render(tokenizer: Any, messages: Conversation, *, generation_prompt: bool) -> str:
    return str(tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=generation_prompt))


def assistant_spans(tokenizer: Any, messages: Conversation) -> list[tuple[int, int]]:
    """Character spans of the rendered text that the model should learn to produce."""
    full = _render(tokenizer, messages, generation_prompt=False)
    eos = tokenizer.eos_token or ""
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not (upto.startswith(prompt) and full.startswith(upto)):
            raise TrainingError(
                "the base model's chat template does not render conversations prefix by "
                "prefix, so assistant tokens cannot be located; set trainOnResponsesOnly "
                "to false to train on every token"
            )
        segment = upto[len(prompt):]
        found = segment.find(message["content"])
        cut = segment.find(eos, found + len(message["content"]) if found >= 0 else 0) \
            if eos else -1
        end = len(prompt) + (cut + len(eos) if cut >= 0 else len(segment))
        spans.append((len(prompt), end))
    return spans


def encode_conversation(tokenizer: Any, messages: Conversation, *, max_length: int,
                        responses_only: bool = True) -> EncodedExample | None:
    """Token ids and labels, truncated to ``max_length``; ``None`` if nothing is left to train."""
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingError("the base model has no chat template (tokenizer_config.json or "
                            "chat_template.jinja); chat-format data needs one")
    text = _render(tokenizer, messages, generation_prompt=False)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(encoded["input_ids"])[:max_length]
    if responses_only:
        spans = assistant_spans(tokenizer, messages)
        offsets = encoded["offset_mapping"][: len(ids)]
        labels = [tok if any(s <= start < e for s, e in spans) else IGNORE_INDEX
                  for tok, (start, _) in zip(ids, offsets, strict=True)]
    else:
        labels = list(ids)
    example = EncodedExample(ids, labels)
    return example if example.trained_tokens else None


def collate(examples: list[EncodedExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example in the batch (already capped at ``maxLength``)."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
