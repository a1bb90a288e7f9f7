"""``python -m arkor.training.runner SPEC.json``: one training job in its own process.

Stdout carries the job's events as JSON lines and nothing else: the real stdout is kept for
events and file descriptor 1 is pointed at stderr before torch or transformers are imported,
so no library print can corrupt the stream. Exit status: 0 completed, 1 failed, 2 usage,
128+signal when cancelled by SIGTERM (143) or SIGINT (130).

The umask is 0o077 from the start, so every checkpoint and adapter it writes is private to
the server's account (files 0600, directories 0700).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path
from typing import IO, Any

from arkor.contract.job_config import DatasetSource
from arkor.training import events
from arkor.training.cancellation import CancelToken
from arkor.training.errors import (
    DatasetError,
    JobConfigError,
    TrainingCancelled,
    TrainingError,
)
from arkor.training.spec import EXIT_FAILED, EXIT_USAGE, RunSpec, load_spec

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
OOM_HINT = "lower batchSize or maxLength"


def take_stdout() -> IO[str]:
    """Keep the real stdout for events; send everything else written to fd 1 to stderr."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", encoding="utf-8", buffering=1)


def describe_error(exc: BaseException, step: int | None) -> str:
    if isinstance(exc, TrainingError | JobConfigError):
        return str(exc)
    text = str(exc)
    if (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in text):
        where = f" at step {step + 1}" if step is not None else ""
        return f"out of memory{where}: {OOM_HINT}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read_rows(path: Path, source: DatasetSource | None) -> list[Any]:
    """The rows; problems in a file on the server's disk are reported without its content."""
    from arkor.training.dataset import validate_dataset

    split = source.split if source is not None and source.type == "huggingface" else None
    try:
        return list(validate_dataset(path, split=split).examples)
    except DatasetError as exc:
        if source is None or source.type == "upload":
            raise
        raise exc.without_details() from None


def run_job(spec: RunSpec, writer: events.EventWriter, cancel: CancelToken) -> int:
    from arkor.contract.job_config import parse_job_config
    from arkor.training.checkpoints import remove_stale_staging
    from arkor.training.dataset import hold_out

    config = parse_job_config(spec.config)
    source, eval_source = config.dataset_source, config.eval_dataset_source
    train_rows = _read_rows(spec.dataset_path, source)
    eval_rows: list[Any] = []
    if spec.eval_dataset_path is not None:
        eval_rows = _read_rows(spec.eval_dataset_path, eval_source)
    elif config.eval_steps is not None:
        train_rows, eval_rows = hold_out(train_rows, config.eval_fraction, config.seed)
    cancel.raise_if_requested()

    import torch

    from arkor.training.lora import LoraRun

    if spec.num_threads is not None:
        torch.set_num_threads(spec.num_threads)
    run = LoraRun(config, job_id=spec.job_id, base_model_dir=spec.base_model_dir,
                  base_model_name=spec.base_model_name or config.model,
                  output_dir=spec.output_dir, emit=writer.emit, cancel=cancel)
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(spec.output_dir)
    metadata = run.prepare(train_rows, eval_rows)
    cancel.raise_if_requested()
    writer.emit(events.started(spec.job_id, metadata))
    try:
        run.train()
    except BaseException as exc:
        exc.add_note(f"arkor-step={run.step}")
        raise
    return 0


def _step_from_notes(exc: BaseException) -> int | None:
    for note in getattr(exc, "__notes__", ()):
        if note.startswith("arkor-step="):
            return int(note.removeprefix("arkor-step="))
    return None


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m arkor.training.runner SPEC.json", file=sys.stderr)
        return EXIT_USAGE
    writer = events.EventWriter(take_stdout())
    cancel = CancelToken()
    cancel.install_signal_handlers()
    os.environ.update(OFFLINE_ENV)
    job_id = ""
    try:
        spec = load_spec(Path(args[0]))
        job_id = spec.job_id
        return run_job(spec, writer, cancel)
    except TrainingCancelled as exc:
        print(f"runner: {exc}", file=sys.stderr)
        writer.emit(events.failed(job_id, error="cancelled", step=_step_from_notes(exc)))
        return 128 + signal.Signals[exc.signal_name].value
    except BaseException as exc:
        traceback.print_exc(file=sys.stderr)
        step = _step_from_notes(exc)
        writer.emit(events.failed(job_id, error=describe_error(exc, step), step=step))
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
