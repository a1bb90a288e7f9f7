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

The setting may name a precision per base model after the default, comma-separated:
``auto,my-org/my-model=int8`` (:class:`PrecisionPlan`).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class PrecisionPlan:
    """The default precision and the base models that have their own."""

    default: str = DEFAULT_PRECISION
    per_model: tuple[tuple[str, str], ...] = ()

    def for_model(self, name: str) -> str:
        return dict(self.per_model).get(name, self.default)

    def __str__(self) -> str:
        return ",".join([self.default, *(f"{name}={value}" for name, value in self.per_model)])


def parse_precision_plan(raw: str) -> PrecisionPlan:
    """``PRECISION`` or ``PRECISION,NAME=PRECISION,...`` (a default and per-model ones, in any
    order; the default is ``auto`` when only per-model ones are given)."""
    default: str | None = None
    per_model: dict[str, str] = {}
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, sep, value = part.rpartition("=")
        if not sep:
            if default is not None:
                raise ValueError(
                    f"engine precision {raw!r} names two defaults; give one, then NAME=PRECISION "
                    "for each base model that differs"
                )
            default = parse_precision(part)
        elif not name.strip():
            raise ValueError(f"engine precision {raw!r}: {part!r} has no base model name")
        elif name.strip() in per_model:
            raise ValueError(f"engine precision {raw!r} names {name.strip()!r} twice")
        else:
            per_model[name.strip()] = parse_precision(value)
    return PrecisionPlan(default or DEFAULT_PRECISION, tuple(per_model.items()))
