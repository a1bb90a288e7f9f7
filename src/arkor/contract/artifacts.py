"""The on-disk layout of a job's artifacts, shared by training, the server, the engine and the SDK.

::

    <artifacts>/checkpoints/step-<N>/   adapter_config.json, adapter_model.safetensors
    <artifacts>/final/                  the same, written when the job completes (or imported)

A leaf module: it imports nothing of ours, so the SDK can use it without server code.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
CHECKPOINTS_DIR = "checkpoints"
FINAL_DIR = "final"


def checkpoint_dir(artifacts_dir: Path, step: int) -> Path:
    return artifacts_dir / CHECKPOINTS_DIR / f"step-{step}"


def final_dir(artifacts_dir: Path) -> Path:
    return artifacts_dir / FINAL_DIR


def largest_scaling(config: dict[str, Any]) -> float:
    """The largest LoRA scaling any module of an adapter (its ``adapter_config.json``) can
    have: the largest alpha over the smallest rank (its square root with ``use_rslora``),
    patterns included. A ``lora_B`` times it must stay finite: the engine stacks each
    adapter's ``B`` times its scaling beside the others' (import and engine both check)."""
    def positive(values: list[object]) -> list[float]:
        return [float(v) for v in values
                if isinstance(v, int | float) and not isinstance(v, bool) and v > 0]

    alpha_pattern, rank_pattern = config.get("alpha_pattern"), config.get("rank_pattern")
    alphas = positive([config.get("lora_alpha", 8),
                       *(alpha_pattern.values() if isinstance(alpha_pattern, dict) else ())])
    ranks = positive([config.get("r", 8),
                      *(rank_pattern.values() if isinstance(rank_pattern, dict) else ())])
    rank = min(ranks or [1.0])
    return max(alphas or [1.0]) / (math.sqrt(rank) if config.get("use_rslora") else rank)
