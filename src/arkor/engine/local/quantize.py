"""Applying an engine precision to a loaded base model (see :mod:`arkor.engine.precision`).

``int8`` replaces each ``nn.Linear`` of the base model, ``lm_head`` included, by an
:class:`Int8Linear`: symmetric int8 weights with one scale per output channel, multiplied by
torch's packed CPU kernel ``aten._weight_int8pack_mm(x, w_int8[out, in], scales[out])``. That
kernel is fast only with bfloat16 activations (with float32 ones it was 6-18x slower than a
float32 matmul on this project's machine), so the rest of the model runs in bfloat16.

``Int8Linear`` is an ``nn.Linear`` subclass, so PEFT wraps it like any Linear: a LoRA layer's
``base_layer`` is the quantized module, and since its weight is not floating point PEFT keeps
the adapter's own weights in float32 (the LoRA delta is computed in float32 and added to the
bfloat16 base output).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from typing import Any

import torch

from arkor.engine.precision import resolve_precision

INT8_MAX = 127.0


class Int8Linear(torch.nn.Linear):
    """A Linear with int8 weights (``weight``, not trainable) and per-row ``scales``."""

    scales: torch.Tensor

    def __init__(self, linear: torch.nn.Linear) -> None:
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float()
        scales = (weight.abs().amax(dim=1) / INT8_MAX).clamp(min=torch.finfo(torch.float32).tiny)
        quantized = weight / scales[:, None]  # one float32 temporary, rounded in place
        quantized.round_().clamp_(-INT8_MAX, INT8_MAX)
        self.weight = torch.nn.Parameter(quantized.to(torch.int8).contiguous(),
                                         requires_grad=False)
        del quantized
        # Float32 until the model is cast: activations must come in the scales' dtype.
        self.register_buffer("scales", scales)
        bias = linear.bias
        self.bias = (None if bias is None
                     else torch.nn.Parameter(bias.detach().float(), requires_grad=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features).to(self.scales.dtype).contiguous()
        out: torch.Tensor = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*shape[:-1], self.out_features)

    def dequantized(self) -> torch.Tensor:
        """The float32 weight this module computes with."""
        return self.weight.float() * self.scales.float()[:, None]


def cpu_runs_int8_fast() -> bool:
    """Whether ``auto`` picks int8 on this CPU: one with AVX2 or better (torch's CPU
    capability ``AVX2`` or ``AVX512``), where the engine decoded faster at int8 than at
    float32 on every machine measured (docs/engine.md, "Precision"); False where torch
    cannot say."""
    capability = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return capability is not None and str(capability()) in ("AVX2", "AVX512")


def apply_precision(model: Any, precision: str, device: torch.device) -> str:
    """Convert ``model`` in place to ``precision`` on ``device``; returns the concrete one."""
    resolved = resolve_precision(precision, device.type,
                                 int8_fast=device.type == "cpu" and cpu_runs_int8_fast())
    if resolved == "float32":
        model.to(torch.float32)
    elif resolved == "bfloat16":
        model.to(torch.bfloat16)
    else:
        if device.type != "cpu":
            raise ValueError("int8 precision uses a CPU kernel; use bfloat16 on CUDA")
        quantize_linears(model)  # from the float32 weights, before the bfloat16 cast
        model.to(torch.bfloat16)
    if resolved != "float32":
        release_free_memory()
    return resolved


def quantize_linears(model: torch.nn.Module) -> int:
    """Replace every ``nn.Linear`` (lm_head too) by an :class:`Int8Linear`; returns how many.

    A tied ``lm_head`` is untied: the input embedding keeps its bfloat16 table.
    """
    # Names only: each float32 Linear is let go as soon as it is replaced (holding them all
    # until the end kept the whole float32 model beside its int8 copy).
    targets = [name for name, module in model.named_modules() if type(module) is torch.nn.Linear]
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Int8Linear(getattr(parent, child)))
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "tie_word_embeddings", False):
        # Keep transformers/PEFT from tying lm_head back to the embedding table.
        config.tie_word_embeddings = False
    return len(targets)


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing
    elsewhere). Converting a model's precision frees hundreds of megabytes of temporaries
    and float32 weights, which glibc otherwise keeps in the loading thread's arena: an int8
    load left the process at ~1,080 MiB, ~630 MiB after the trim."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).malloc_trim(0)
