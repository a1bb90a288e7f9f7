"""Helpers to run the real training runner as a subprocess and read its events."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from arkor.engine.registry import EMBEDDED_MODEL_NAME
from arkor.training.demo import DEMO_CONFIG, demo_dataset_path
from arkor.training.spec import RunSpec, runner_command, write_spec

# Small enough that a step takes well under a second on 2 CPU cores.
FAST_CONFIG: dict[str, Any] = {
    **DEMO_CONFIG,
    "maxSteps": 4,
    "batchSize": 2,
    "maxLength": 96,
    "learningRate": 2e-3,
    "loggingSteps": 1,
    "saveSteps": 2,
}


@dataclass
class RunnerResult:
    returncode: int
    events: list[dict[str, Any]]
    stdout_lines: list[str]
    stderr: str


def make_spec(tmp_path: Path, base_model_dir: Path, config: dict[str, Any], *,
              dataset: Path | None = None, eval_dataset: Path | None = None) -> Path:
    spec = RunSpec(
        job_id="job-test",
        base_model_dir=base_model_dir,
        base_model_name=EMBEDDED_MODEL_NAME,
        dataset_path=dataset or demo_dataset_path(),
        eval_dataset_path=eval_dataset,
        output_dir=tmp_path / "out",
        config=config,
    )
    return write_spec(spec, tmp_path / "spec.json")


def start_runner(spec_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(runner_command(spec_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ})


def run_runner(spec_path: Path, timeout: float = 240) -> RunnerResult:
    proc = subprocess.run(runner_command(spec_path), capture_output=True, text=True,
                          timeout=timeout)
    lines = proc.stdout.splitlines()
    return RunnerResult(proc.returncode, [json.loads(line) for line in lines], lines,
                        proc.stderr)


def read_events_until(proc: subprocess.Popen[str], predicate: Any,
                      seen: list[dict[str, Any]]) -> dict[str, Any]:
    """Read events from a running runner until one matches ``predicate``."""
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        seen.append(event)
        if predicate(event):
            return event
    raise AssertionError(f"runner ended before the awaited event; events: {seen}\n"
                         f"stderr: {proc.stderr.read() if proc.stderr else ''}")


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still alive at teardown are killed."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


@pytest.fixture(scope="session")
def tokenizer(embedded_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)
