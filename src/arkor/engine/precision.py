"""Engine precision: how the base model's weights and activations are stored and computed.

Pure configuration (no torch), so the control plane validates the setting without loading the
engine. :mod:`arkor.engine.local.quantize` applies a precision to a loaded model.

- ``float32``: weights and activations in float32 (the CPU default).
- ``bfloat16``: weights and activations in bfloat16.
- ``int8``: weight-only int8 for every ``nn.Linear`` of the base model and ``lm_head`` (one
  scale per output channel), bfloat16 activations and everything else in bfloat16; LoRA
  deltas stay in float32 outside the packed matmul.
- ``int4``: weight-only 4-bit weights in groups of 32 along the input, each with a scale and a
  minimum (a GGUF Q4_1 block: the embedded model's weights come back exactly, up to bfloat16
  scales), for every ``nn.Linear`` but ``lm_head``, which is int8; bfloat16 activations.
- ``auto`` (the default): the fastest precision that passes the quality bar on the device
  (docs/engine.md, "Precision"): ``int4`` on a CPU with AVX-512 (faster than int8 there,
  one stream and 16 concurrent, with or without AVX-512 BF16, and nearer float32) or with
  AVX2 alone (faster than int8 at one stream, about as fast at 16 concurrent, and nearer
  float32), ``float32`` on other CPUs, ``bfloat16`` on CUDA.

Logits always reach sampling, logprobs and grammar masking as float32.

The setting may name a precision per base model after the default, comma-separated:
``auto,my-org/my-model=int8`` (:class:`PrecisionPlan`).
"""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("auto", "float32", "bfloat16", "int8", "int4")
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


def resolve_precision(precision: str, device_type: str, *, cpu_auto: str = "float32") -> str:
    """The concrete precision (never ``auto``) for a model on ``device_type``; ``cpu_auto``:
    what ``auto`` is on this CPU (``arkor.engine.local.quantize.cpu_auto_precision``)."""
    value = parse_precision(precision)
    if value != "auto":
        return value
    if device_type != "cpu":
        return "bfloat16"
    return cpu_auto


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
