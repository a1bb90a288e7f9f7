"""Attaching an adapter to LoRA layers that exist skips PEFT's ``add_adapter`` and gives what
PEFT's own loading gives; adapters it cannot take that way go through PEFT as before."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from arkor.engine.base import AdapterLoadError, AdapterRef
from arkor.engine.local.adapters import PEFT_DEPRECATION, AdapterSet, read_adapter
from arkor.engine.registry import EMBEDDED_MODEL_NAME

PREFIX = "base_model.model.model.layers"
CPU = torch.device("cpu")


def random_adapter(path: Path, seed: int, modules: tuple[str, ...] = ("q_proj", "v_proj"),
                   *, drop: str | None = None, **config: Any) -> AdapterRef:
    """An adapter of random weights on ``modules`` of every layer (``drop``: a tensor left
    out of its files)."""
    out = {"q_proj": 576, "k_proj": 192, "v_proj": 192}
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(30):
        for module in modules:
            stem = f"{PREFIX}.{layer}.self_attn.{module}"
            tensors[f"{stem}.lora_A.weight"] = torch.randn(8, 576, generator=generator) / 24
            tensors[f"{stem}.lora_B.weight"] = torch.randn(out[module], 8,
                                                           generator=generator) / 8
    if drop is not None:
        del tensors[drop]
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16,
        "target_modules": list(modules), "base_model_name_or_path": EMBEDDED_MODEL_NAME,
        **config}))
    save_file(tensors, str(path / "adapter_model.safetensors"))
    return AdapterRef(key=f"test:{path.name}", path=path)


def base_model(model_dir: Path) -> Any:
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def peft_logits(model_dir: Path, ref: AdapterRef, ids: torch.Tensor) -> torch.Tensor:
    """The adapter loaded by PEFT alone, as a reference."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", PEFT_DEPRECATION, FutureWarning)
        model = PeftModel.from_pretrained(base_model(model_dir), str(ref.path)).eval()
    with torch.inference_mode():
        logits: torch.Tensor = model(input_ids=ids).logits
        return logits


@pytest.fixture
def attached(embedded_model_dir: Path) -> AdapterSet:
    return AdapterSet(base_model(embedded_model_dir), 8, CPU)


def attach(adapters: AdapterSet, ref: AdapterRef) -> str:
    with torch.inference_mode():
        name = adapters.acquire(ref, read_adapter(ref, CPU))
    assert name is not None
    return name


def logits(adapters: AdapterSet, names: list[str], ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        out: Any = adapters.forward(names, input_ids=ids)
        return torch.as_tensor(out.logits)


def test_an_adapter_like_one_attached_before_skips_add_adapter_and_equals_peft(
    attached: AdapterSet, embedded_model_dir: Path, tmp_path: Path
) -> None:
    first = random_adapter(tmp_path / "first", 1)
    second = random_adapter(tmp_path / "second", 2)
    ids = torch.tensor([[1, 422, 1145, 314, 253, 3717, 30]] * 3)
    first_name = attach(attached, first)
    before = logits(attached, [first_name], ids[:1])

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("PEFT's add_adapter was called")

    attached.model.add_adapter = refuse
    second_name = attach(attached, second)
    got = logits(attached, [first_name, second_name, "__base__"], ids)
    torch.testing.assert_close(got[1], peft_logits(embedded_model_dir, second, ids[1:2])[0],
                               rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(got[0], before[0], rtol=1e-3, atol=1e-3)
    assert not torch.allclose(got[0], got[1], atol=1e-3)
    assert set(attached.model.peft_config) == {first_name, second_name}


def test_adapters_it_cannot_take_directly_go_through_peft(
    attached: AdapterSet, embedded_model_dir: Path, tmp_path: Path
) -> None:
    attach(attached, random_adapter(tmp_path / "first", 1))
    calls = []
    real_add = attached.model.add_adapter

    def counted(*args: Any, **kwargs: Any) -> None:
        calls.append(args[0])
        real_add(*args, **kwargs)

    attached.model.add_adapter = counted
    # A tensor missing from the files is still refused, and the set still serves.
    gap = f"{PREFIX}.4.self_attn.v_proj.lora_B.weight"
    holey = random_adapter(tmp_path / "holey", 3, drop=gap)
    with pytest.raises(AdapterLoadError, match="no weights for 1 LoRA tensors"):
        attach(attached, holey)
    # A new target (k_proj) needs new LoRA layers: PEFT's path, with PEFT's result.
    wider = random_adapter(tmp_path / "wider", 4, ("q_proj", "k_proj", "v_proj"))
    name = attach(attached, wider)
    ids = torch.tensor([[1, 422, 1145, 314, 253, 3717, 30]])
    torch.testing.assert_close(logits(attached, [name], ids),
                               peft_logits(embedded_model_dir, wider, ids), rtol=1e-3, atol=1e-3)
    # Options that change how an adapter applies go through PEFT too (rsLoRA is not one).
    scaled = attach(attached, random_adapter(tmp_path / "rs", 5, use_rslora=True))
    torch.testing.assert_close(
        logits(attached, [scaled], ids),
        peft_logits(embedded_model_dir, AdapterRef("rs", tmp_path / "rs"), ids),
        rtol=1e-3, atol=1e-3)
    assert len(calls) == 2, calls  # the holey one and the wider one
