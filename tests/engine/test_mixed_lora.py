"""The grouped mixed-adapter forward gives exactly PEFT's own mixed-batch result."""

from __future__ import annotations

import warnings

import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora.layer import Linear

from arkor.engine.local.adapters import PEFT_DEPRECATION
from arkor.engine.local.mixed_lora import install, row_groups


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = torch.nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q_proj(x)


def test_grouped_forward_equals_peft_mixed_batch() -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", PEFT_DEPRECATION, FutureWarning)
        model = get_peft_model(Tiny(), LoraConfig(r=4, target_modules=["q_proj"],
                                                  init_lora_weights=False), adapter_name="one")
    model.add_adapter("two", LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    layer = model.base_model.model.q_proj
    assert isinstance(layer, Linear)
    x = torch.randn(5, 3, 16)
    names = ["one", "__base__", "two", "one", "two"]
    with torch.inference_mode():
        expected = layer(x, adapter_names=names)
        groups = row_groups(names, "__base__", torch.device("cpu"))
        install(layer, lambda: groups)
        got = layer(x, adapter_names=names)
        assert [(n, r.tolist()) for n, r in groups] == [("one", [0, 3]), ("two", [2, 4])]
        assert torch.equal(got, expected)
        # The base row has no LoRA term. Compared within the same batched matmul: one row on
        # its own may round differently from the same row inside a batch.
        base = layer.base_layer(x)
        assert torch.equal(got[1], base[1])
        assert not torch.equal(got[0], base[0])
