"""Adapters written atomically into a job's output directory (:mod:`arkor.contract.artifacts`).

An adapter is saved into a hidden staging directory next to its target and renamed into
place, so a ``step-<N>`` or ``final`` directory is always complete, even after a SIGKILL.
Leftover staging directories are removed when the next run starts.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from arkor.contract.artifacts import ADAPTER_CONFIG, ADAPTER_FILES, CHECKPOINTS_DIR

STAGING_MARK = ".staging-"


def remove_stale_staging(output_dir: Path) -> None:
    for parent in (output_dir, output_dir / CHECKPOINTS_DIR):
        if parent.is_dir():
            for child in parent.iterdir():
                if child.name.startswith(STAGING_MARK):
                    shutil.rmtree(child, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_adapter(model: Any, target: Path, *, base_model_name: str,
                 output_dir: Path) -> list[dict[str, Any]]:
    """Save the PEFT adapter of ``model`` to ``target`` atomically; return its artifacts.

    ``base_model_name_or_path`` is set to the registered model name rather than the local
    directory the weights came from, and PEFT's generated README.md is dropped.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_MARK}{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(str(staging), save_embedding_layers=False)
        (staging / "README.md").unlink(missing_ok=True)
        config_path = staging / ADAPTER_CONFIG
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = base_model_name
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for name in ADAPTER_FILES:
            with open(staging / name, "rb") as handle:
                os.fsync(handle.fileno())
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return adapter_artifacts(target, output_dir=output_dir)


def adapter_artifacts(adapter_dir: Path, *, output_dir: Path) -> list[dict[str, Any]]:
    """``[{"pathname", "bytes"}]`` for each adapter file, relative to the job's output dir."""
    return [
        {"pathname": (adapter_dir / name).relative_to(output_dir).as_posix(),
         "bytes": (adapter_dir / name).stat().st_size}
        for name in ADAPTER_FILES
    ]
