"""The runner's process interface: SPEC.json in; JSON-line events out; an exit status.

The control plane writes a :class:`RunSpec` with :func:`write_spec`, starts
:func:`runner_command`, reads events from the child's stdout (one per line, see
:mod:`arkor.training.events`), and on exit turns a status that came without a terminal event
into a readable reason with :func:`exit_reason` (e.g. the kernel's OOM killer).

The runner gets :func:`runner_environment`, not the server's: an allow-list of what Python,
torch and the offline Hugging Face libraries need. Nothing else the server holds (database
URLs, tokens, cloud credentials) reaches the process that runs a caller's job.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arkor.training.errors import RunSpecError

EXIT_FAILED = 1
EXIT_USAGE = 2

RUNNER_ENV_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PYTHONWARNINGS",
    "LD_LIBRARY_PATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "TOKENIZERS_PARALLELISM", "HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE",
    "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY", "XDG_CACHE_HOME", "COVERAGE_PROCESS_START",
})
RUNNER_ENV_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "PYTORCH_", "TORCH_", "COV_CORE_")


@dataclass(frozen=True)
class RunSpec:
    job_id: str
    base_model_dir: Path
    dataset_path: Path
    output_dir: Path
    config: dict[str, Any]
    base_model_name: str | None = None
    eval_dataset_path: Path | None = None
    num_threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "jobId": self.job_id,
            "baseModelDir": str(self.base_model_dir),
            "datasetPath": str(self.dataset_path),
            "outputDir": str(self.output_dir),
            "config": self.config,
        }
        if self.base_model_name is not None:
            wire["baseModelName"] = self.base_model_name
        if self.eval_dataset_path is not None:
            wire["evalDatasetPath"] = str(self.eval_dataset_path)
        if self.num_threads is not None:
            wire["numThreads"] = self.num_threads
        return wire


def _required_text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise RunSpecError(f"spec field {key!r} must be a non-empty string")
    return value


def parse_spec(raw: Any) -> RunSpec:
    if not isinstance(raw, dict):
        raise RunSpecError("spec must be a JSON object")
    config = raw.get("config")
    if not isinstance(config, dict):
        raise RunSpecError("spec field 'config' must be a JSON object (the JobConfig)")
    name = raw.get("baseModelName")
    eval_path = raw.get("evalDatasetPath")
    threads = raw.get("numThreads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)
                                or threads < 1):
        raise RunSpecError("spec field 'numThreads' must be a positive integer")
    known = {"jobId", "baseModelDir", "datasetPath", "outputDir", "config", "baseModelName",
             "evalDatasetPath", "numThreads"}
    return RunSpec(
        job_id=_required_text(raw, "jobId"),
        base_model_dir=Path(_required_text(raw, "baseModelDir")),
        dataset_path=Path(_required_text(raw, "datasetPath")),
        output_dir=Path(_required_text(raw, "outputDir")),
        config=config,
        base_model_name=name if isinstance(name, str) and name else None,
        eval_dataset_path=Path(eval_path) if isinstance(eval_path, str) and eval_path else None,
        num_threads=threads,
        extra={k: v for k, v in raw.items() if k not in known},
    )


def load_spec(path: Path) -> RunSpec:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RunSpecError(f"cannot read spec file {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise RunSpecError(f"spec file {path} is not valid JSON: {exc}") from exc
    return parse_spec(raw)


def write_spec(spec: RunSpec, path: Path) -> Path:
    """Write SPEC.json with mode 0600 (it names the job's files)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(spec.to_wire(), indent=2) + "\n")
    return path


def runner_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The runner's environment: the allow-listed part of ``environ``, unbuffered output."""
    kept = {name: value for name, value in environ.items()
            if name in RUNNER_ENV_NAMES or name.startswith(RUNNER_ENV_PREFIXES)}
    return {**kept, "PYTHONUNBUFFERED": "1"}


def runner_command(spec_path: Path, *, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", "arkor.training.runner", str(spec_path)]


def exit_reason(returncode: int) -> str | None:
    """Why the runner ended, for a process that exited without a terminal event.

    ``returncode`` follows :mod:`subprocess` (negative: killed by that signal).
    """
    if returncode == 0:
        return None
    if returncode == -signal.SIGKILL:
        return ("the training process was killed (SIGKILL), most likely by the system "
                "running out of memory; lower batchSize or maxLength")
    if returncode < 0:
        return f"the training process was stopped by {signal.Signals(-returncode).name}"
    if returncode in (128 + signal.SIGTERM, 128 + signal.SIGINT):
        return "cancelled"
    return f"the training process exited with status {returncode}"
