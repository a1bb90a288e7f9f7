from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from arkor.engine.registry import EMBEDDED_MODEL_NAME
from arkor.training.adapters import check_adapter_compatible
from arkor.training.errors import AdapterIncompatible

PREFIX = "base_model.model.model.layers"


def lora_tensors(layers: range = range(30), r: int = 8, hidden: int = 576,
                 kv: int = 192) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i in layers:
        shapes[f"{PREFIX}.{i}.self_attn.q_proj.lora_A.weight"] = (r, hidden)
        shapes[f"{PREFIX}.{i}.self_attn.q_proj.lora_B.weight"] = (hidden, r)
        shapes[f"{PREFIX}.{i}.self_attn.v_proj.lora_A.weight"] = (r, hidden)
        shapes[f"{PREFIX}.{i}.self_attn.v_proj.lora_B.weight"] = (kv, r)
    return shapes


def write_adapter(path: Path, shapes: dict[str, tuple[int, ...]], **config: Any) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    adapter_config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16,
                      "target_modules": ["q_proj", "v_proj"],
                      "base_model_name_or_path": EMBEDDED_MODEL_NAME, **config}
    (path / "adapter_config.json").write_text(json.dumps(adapter_config))
    save_file({k: torch.zeros(s) for k, s in shapes.items()},
              str(path / "adapter_model.safetensors"))
    return path


def check(adapter: Path, base: Path) -> Any:
    return check_adapter_compatible(adapter, base, base_model_name=EMBEDDED_MODEL_NAME)


def test_valid_adapter(tmp_path: Path, embedded_model_dir: Path) -> None:
    info = check(write_adapter(tmp_path, lora_tensors()), embedded_model_dir)
    assert (info.peft_type, info.r, info.lora_alpha) == ("LORA", 8, 16.0)
    assert info.target_modules == ("q_proj", "v_proj")
    assert (info.adapted_modules, info.num_tensors, info.num_parameters) == (60, 120, 460800)
    assert info.declared_base_model == EMBEDDED_MODEL_NAME


def test_regex_targets_and_tied_lm_head(tmp_path: Path, embedded_model_dir: Path) -> None:
    shapes = {**lora_tensors(range(2)),
              "base_model.model.lm_head.lora_A.weight": (8, 576),
              "base_model.model.lm_head.lora_B.weight": (49152, 8)}
    info = check(write_adapter(tmp_path, shapes, target_modules=".*(q_proj|v_proj|lm_head)"),
                 embedded_model_dir)
    assert info.adapted_modules == 5


@pytest.mark.parametrize(("shapes", "config", "message"), [
    (lora_tensors(hidden=2048), {},
     "adapter targets hidden size 2048 but HuggingFaceTB/SmolLM2-135M-Instruct has 576"),
    (lora_tensors(kv=576), {}, "adapter expects output size 576 for model.layers.0.self_attn."
                               "v_proj but HuggingFaceTB/SmolLM2-135M-Instruct has 192"),
    (lora_tensors(range(32)), {}, "adapter has weights for model.layers.30.self_attn.q_proj, "
                                  "which HuggingFaceTB/SmolLM2-135M-Instruct does not have "
                                  "(it has 30 layers)"),
    (lora_tensors(), {"target_modules": ["q_proj", "qkv_proj"]},
     "adapter targets modules that HuggingFaceTB/SmolLM2-135M-Instruct does not have: qkv_proj"),
    ({**lora_tensors(range(1)), "base_model.model.model.layers.0.self_attn.qkv_proj.lora_A"
      ".weight": (8, 576)}, {}, "adapter has weights for model.layers.0.self_attn.qkv_proj"),
    (lora_tensors(), {"peft_type": "IA3"}, "only LoRA adapters can be imported"),
    (lora_tensors(), {"task_type": "SEQ_CLS"}, "text generation needs CAUSAL_LM"),
    (lora_tensors(), {"r": 0}, "r must be a positive integer"),
    ({f"{PREFIX}.0.self_attn.q_proj.lora_A.weight": (4, 576),
      f"{PREFIX}.0.self_attn.q_proj.lora_B.weight": (576, 8)}, {},
     "LoRA matrices disagree on the rank (4 vs 8)"),
    ({f"{PREFIX}.0.self_attn.q_proj.lora_A.weight": (8, 576)}, {},
     "has only one of its two LoRA matrices"),
    ({}, {}, "holds no LoRA weights"),
])
def test_incompatible_adapters(tmp_path: Path, embedded_model_dir: Path,
                               shapes: dict[str, tuple[int, ...]], config: dict[str, Any],
                               message: str) -> None:
    adapter = write_adapter(tmp_path, shapes, **config)
    with pytest.raises(AdapterIncompatible) as caught:
        check(adapter, embedded_model_dir)
    assert message in str(caught.value)


def test_missing_and_damaged_files(tmp_path: Path, embedded_model_dir: Path) -> None:
    adapter = write_adapter(tmp_path / "a", lora_tensors())
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(AdapterIncompatible, match="is truncated"):
        check(adapter, embedded_model_dir)
    weights.write_bytes(b"\x00\x01")
    with pytest.raises(AdapterIncompatible, match="empty or truncated"):
        check(adapter, embedded_model_dir)
    weights.unlink()
    (adapter / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(AdapterIncompatible, match=r"adapter_model\.bin is not accepted"):
        check(adapter, embedded_model_dir)
    with pytest.raises(AdapterIncompatible, match=r"needs adapter_config\.json"):
        check(tmp_path / "empty", embedded_model_dir)
