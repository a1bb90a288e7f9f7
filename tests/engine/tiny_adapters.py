"""Two tiny LoRA adapters trained on the embedded model, so adapter rows visibly differ.

Task A labels support tickets (``LABEL: billing|bug|other``), task B names the language of a
sentence (``LANG: en|fr|de|es``). r=8 on q_proj/v_proj, 20 steps of 8 examples: about 40 s
each on two cores, done once and kept in pytest's cache.
"""

from __future__ import annotations

import random
import shutil
import warnings
from pathlib import Path

from arkor.engine.local.adapters import PEFT_DEPRECATION
from tests.locks import making

TICKETS = {
    "billing": [
        "I was charged twice for my subscription this month.",
        "My invoice shows the wrong amount.",
        "Please refund the payment I made by mistake.",
        "Why did my card get billed after I cancelled?",
        "The VAT on my receipt is incorrect.",
        "I need a copy of last month's invoice.",
        "Can I switch from monthly to yearly billing?",
        "The discount code was not applied to my order.",
        "You took money from my account without asking.",
        "How do I update the credit card on file?",
        "My payment failed but the money left my bank.",
        "I was billed for two seats but only use one.",
    ],
    "bug": [
        "The app crashes when I open the settings page.",
        "Clicking save does nothing and my changes are lost.",
        "The export button gives me an empty file.",
        "Login fails with an error 500 since this morning.",
        "Images do not load on the dashboard anymore.",
        "The search returns results from the wrong project.",
        "Notifications arrive twice on my phone.",
        "The page freezes when I scroll the report.",
        "Dark mode makes the text invisible in tables.",
        "Uploading a PDF shows a spinning wheel forever.",
        "The date picker shows the wrong month.",
        "Sync stopped working after the last update.",
    ],
    "other": [
        "Do you have an office in Berlin?",
        "Are you hiring designers this year?",
        "What are your opening hours on holidays?",
        "Can I suggest a feature for the roadmap?",
        "Who should I contact for a partnership?",
        "Do you offer training for new teams?",
        "Is there a newsletter I can subscribe to?",
        "Can I visit your booth at the trade fair?",
        "What is the name of your CEO?",
        "Do you support charities or nonprofits?",
        "Where can I find your brand logo?",
        "Thanks for the great support last week!",
    ],
}

SENTENCES = {
    "en": [
        "The weather is lovely today.",
        "My brother plays the guitar every evening.",
        "We are going to the market tomorrow.",
        "This book is very interesting.",
        "Please close the window, it is cold.",
        "The train leaves at seven o'clock.",
        "I would like a cup of tea.",
        "The children are sleeping upstairs.",
        "She works at the hospital.",
        "Our garden is full of flowers.",
    ],
    "fr": [
        "Il fait très beau aujourd'hui.",
        "Mon frère joue de la guitare chaque soir.",
        "Nous allons au marché demain.",
        "Ce livre est très intéressant.",
        "Ferme la fenêtre, s'il te plaît, il fait froid.",
        "Le train part à sept heures.",
        "Je voudrais une tasse de thé.",
        "Les enfants dorment en haut.",
        "Elle travaille à l'hôpital.",
        "Notre jardin est plein de fleurs.",
    ],
    "de": [
        "Das Wetter ist heute herrlich.",
        "Mein Bruder spielt jeden Abend Gitarre.",
        "Wir gehen morgen auf den Markt.",
        "Dieses Buch ist sehr interessant.",
        "Bitte schließ das Fenster, es ist kalt.",
        "Der Zug fährt um sieben Uhr ab.",
        "Ich hätte gern eine Tasse Tee.",
        "Die Kinder schlafen oben.",
        "Sie arbeitet im Krankenhaus.",
        "Unser Garten ist voller Blumen.",
    ],
    "es": [
        "Hoy hace un tiempo precioso.",
        "Mi hermano toca la guitarra cada noche.",
        "Mañana vamos al mercado.",
        "Este libro es muy interesante.",
        "Cierra la ventana, por favor, hace frío.",
        "El tren sale a las siete.",
        "Quisiera una taza de té.",
        "Los niños duermen arriba.",
        "Ella trabaja en el hospital.",
        "Nuestro jardín está lleno de flores.",
    ],
}


def label_examples() -> list[tuple[str, str]]:
    return [(text, f"LABEL: {label}") for label, texts in TICKETS.items() for text in texts]


def lang_examples() -> list[tuple[str, str]]:
    return [(text, f"LANG: {lang}") for lang, texts in SENTENCES.items() for text in texts]


def train_adapter(
    base_dir: Path, examples: list[tuple[str, str]], out: Path, *, steps: int = 20
) -> Path:
    """Train a LoRA adapter on (prompt, answer) pairs; the loss covers the answer only (once
    per ``out``: a second caller, in this process or another, gets the first's)."""
    if (out / "adapter_config.json").is_file():
        return out
    with making(out):
        if not (out / "adapter_config.json").is_file():
            _train(base_dir, examples, out, steps)
    return out


def _train(base_dir: Path, examples: list[tuple[str, str]], out: Path, steps: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    rng = random.Random(0)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj"],
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", PEFT_DEPRECATION, FutureWarning)
        model = get_peft_model(model, config)
    model.train()
    encoded = [_encode(tokenizer, prompt, answer) for prompt, answer in examples]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    order: list[int] = []
    for _ in range(steps):
        if len(order) < 8:
            order += rng.sample(range(len(encoded)), len(encoded))
        batch = [encoded[order.pop()] for _ in range(8)]
        ids, mask, labels = _collate(batch, tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    staging.rename(out)


def _encode(tokenizer: object, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    messages = [{"role": "user", "content": prompt}]
    prompt_ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    answer_ids = tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
    return list(prompt_ids), list(answer_ids)


def _collate(batch: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[object, ...]:
    import torch

    width = max(len(p) + len(a) for p, a in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (prompt, answer) in enumerate(batch):
        tokens = prompt + answer
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
        labels[row, len(prompt) : len(tokens)] = torch.tensor(answer)
    return ids, mask, labels
