"""The on-disk layout of a job's artifacts, shared by training, the server, the engine and the SDK.

::

    <artifacts>/checkpoints/step-<N>/   adapter_config.json, adapter_model.safetensors
    <artifacts>/final/                  the same, written when the job completes (or imported)

A leaf module: it imports nothing of ours, so the SDK can use it without server code.
"""

from __future__ import annotations

from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
CHECKPOINTS_DIR = "checkpoints"
FINAL_DIR = "final"


def checkpoint_dir(artifacts_dir: Path, step: int) -> Path:
    return artifacts_dir / CHECKPOINTS_DIR / f"step-{step}"


def final_dir(artifacts_dir: Path) -> Path:
    return artifacts_dir / FINAL_DIR
