"""Engine precision: how the base model's weights and activations are stored and computed.

Pure configuration (no torch), so the control plane validates the setting without loading the
engine. :mod:`arkor.engine.local.quantize` applies a precision to a loaded model.

- ``float32``: weights and activations in float32 (the CPU default).
- ``bfloat16``: weights and activations in bfloat16.
- ``int8``: weight-only int8 for every ``nn.Linear`` of the base model and ``lm_head`` (one
  scale per output channel), bfloat16 activations and everything else in bfloat16; LoRA
  deltas stay in float32 outside the packed matmul.
- ``auto`` (the default): float32 on a CPU, bfloat16 on CUDA, as the engine always loaded
  models; see docs/engine.md, "Precision", for why ``auto`` does not pick a lower precision
  on a CPU yet.

Logits always reach sampling, logprobs and grammar masking as float32.
"""

from __future__ import annotations

PRECISIONS = ("auto", "float32", "bfloat16", "int8")
DEFAULT_PRECISION = "auto"


def parse_precision(raw: str) -> str:
    """The precision named by ``raw`` (any case); a ValueError naming the choices otherwise."""
    value = raw.strip().lower()
    if value not in PRECISIONS:
        raise ValueError(
            f"engine precision must be one of {', '.join(PRECISIONS)} (ARKOR_ENGINE_PRECISION "
            f"or --engine-precision), not {raw!r}"
        )
    return value


def resolve_precision(precision: str, device_type: str) -> str:
    """The concrete precision (never ``auto``) for a model on ``device_type``."""
    value = parse_precision(precision)
    if value != "auto":
        return value
    return "float32" if device_type == "cpu" else "bfloat16"
