from __future__ import annotations

from typing import Any

import torch

from arkor.training.encoding import IGNORE_INDEX, collate, encode_conversation

CONVERSATION = [
    {"role": "system", "content": "Answer with one word."},
    {"role": "user", "content": "Colour of the sky?"},
    {"role": "assistant", "content": "Blue"},
    {"role": "user", "content": "And grass?"},
    {"role": "assistant", "content": "Green"},
]


def trained_text(tokenizer: Any, ids: list[int], labels: list[int]) -> str:
    return tokenizer.decode([t for t, label in zip(ids, labels, strict=True)
                             if label != IGNORE_INDEX])


def test_only_assistant_turns_and_their_end_token_are_trained(tokenizer: Any) -> None:
    example = encode_conversation(tokenizer, CONVERSATION, max_length=256)
    assert example is not None
    assert trained_text(tokenizer, example.input_ids, example.labels) == \
        "Blue<|im_end|>Green<|im_end|>"
    full = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert tokenizer.decode(example.input_ids) == full


def test_trained_tokens_follow_the_generation_prompt(tokenizer: Any) -> None:
    """What is trained is exactly what the model must generate after the inference prompt."""
    example = encode_conversation(tokenizer, CONVERSATION[:3], max_length=256)
    assert example is not None
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False,
                                           add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert example.input_ids[: len(prompt_ids)] == prompt_ids
    assert all(label == IGNORE_INDEX for label in example.labels[: len(prompt_ids)])
    first_trained = example.labels.index(next(lab for lab in example.labels if lab != -100))
    assert first_trained == len(prompt_ids)


def test_all_tokens_when_not_responses_only(tokenizer: Any) -> None:
    example = encode_conversation(tokenizer, CONVERSATION, max_length=256,
                                  responses_only=False)
    assert example is not None
    assert example.labels == example.input_ids


def test_truncation_and_examples_with_nothing_left(tokenizer: Any) -> None:
    short = encode_conversation(tokenizer, CONVERSATION, max_length=40)
    assert short is not None and len(short.input_ids) == 40
    assert encode_conversation(tokenizer, CONVERSATION, max_length=16) is None


def test_collate_pads_to_the_longest_row(tokenizer: Any) -> None:
    a = encode_conversation(tokenizer, CONVERSATION, max_length=256)
    b = encode_conversation(tokenizer, CONVERSATION[:3], max_length=256)
    assert a is not None and b is not None
    batch = collate([a, b], tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, len(a.input_ids))
    assert batch["attention_mask"][1].sum() == len(b.input_ids)
    assert torch.all(batch["labels"][1, len(b.input_ids):] == IGNORE_INDEX)
    assert torch.all(batch["input_ids"][1, len(b.input_ids):] == tokenizer.pad_token_id)
