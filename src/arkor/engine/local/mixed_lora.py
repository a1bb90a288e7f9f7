"""PEFT's mixed-adapter LoRA forward, with the rows of each adapter grouped once per step.

PEFT's ``_mixed_batch_forward`` rebuilds the per-adapter row lists in Python and indexes the
batch with them in every LoRA layer (60 layers of q/v for SmolLM2) on every decode step;
each list becomes an index tensor again each time. Here the groups are index tensors made
once per forward pass and shared by every layer. The arithmetic is PEFT's own, in the same
order (gather the rows, ``lora_B(lora_A(dropout(x))) * scaling``, add back), so outputs are
identical; adapters with a LoRA variant (DoRA, ...) fall back to PEFT's path.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, cast

import torch
from peft.tuners.lora.layer import VARIANT_KWARG_KEYS, Linear

Groups = list[tuple[str, torch.Tensor]]


def row_groups(row_adapters: list[str], base_name: str, device: torch.device) -> Groups:
    """``[(adapter, LongTensor of its rows)]`` for every adapter but the base."""
    rows: dict[str, list[int]] = {}
    for index, name in enumerate(row_adapters):
        rows.setdefault(name, []).append(index)
    return [(name, torch.tensor(indices, device=device))
            for name, indices in rows.items() if name != base_name]


def install(layer: Any, groups_of: Callable[[], Groups | None]) -> None:
    """Give one LoRA ``Linear`` layer the grouped mixed-batch forward."""
    if not isinstance(layer, Linear):
        return
    original = layer._mixed_batch_forward

    def grouped(self: Any, x: torch.Tensor, *args: Any, adapter_names: list[str],
                **kwargs: Any) -> torch.Tensor:
        groups = groups_of()
        if groups is None or any(name in self.lora_variant for name, _ in groups):
            return original(x, *args, adapter_names=adapter_names, **kwargs)
        for key in VARIANT_KWARG_KEYS:
            kwargs.pop(key, None)
        result = self.base_layer(x, *args, **kwargs)
        result_dtype = result.dtype
        for name, rows in groups:
            if name not in self.lora_A:
                continue
            lora_a, lora_b = self.lora_A[name], self.lora_B[name]
            sub_batch = x[rows].to(lora_a.weight.dtype)
            output = lora_b(lora_a(self.lora_dropout[name](sub_batch))) * self.scaling[name]
            result[rows] += output.to(result_dtype)
        return cast(torch.Tensor, result)

    # PEFT looks the method up on the instance; replacing it there is the hook.
    layer._mixed_batch_forward = types.MethodType(grouped, layer)  # type: ignore[method-assign]
