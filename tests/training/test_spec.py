from __future__ import annotations

import signal
from pathlib import Path

import pytest

from arkor.training.errors import RunSpecError
from arkor.training.spec import (
    RunSpec,
    exit_reason,
    load_spec,
    parse_spec,
    runner_command,
    write_spec,
)


def test_spec_round_trip(tmp_path: Path) -> None:
    spec = RunSpec(job_id="j", base_model_dir=Path("/m"), dataset_path=Path("/d.jsonl"),
                   output_dir=Path("/o"), config={"model": "x"}, base_model_name="org/x",
                   eval_dataset_path=Path("/e.jsonl"), num_threads=1)
    assert load_spec(write_spec(spec, tmp_path / "spec.json")) == spec
    assert runner_command(tmp_path / "spec.json", python="py") == [
        "py", "-m", "arkor.training.runner", str(tmp_path / "spec.json")]


@pytest.mark.parametrize(("raw", "message"), [
    ([], "spec must be a JSON object"),
    ({"jobId": "j", "baseModelDir": "/m", "datasetPath": "/d", "outputDir": "/o"},
     "'config' must be a JSON object"),
    ({"jobId": "", "baseModelDir": "/m", "datasetPath": "/d", "outputDir": "/o", "config": {}},
     "'jobId' must be a non-empty string"),
    ({"jobId": "j", "datasetPath": "/d", "outputDir": "/o", "config": {}},
     "'baseModelDir' must be a non-empty string"),
    ({"jobId": "j", "baseModelDir": "/m", "datasetPath": "/d", "outputDir": "/o", "config": {},
      "numThreads": 0}, "'numThreads' must be a positive integer"),
])
def test_bad_specs(raw: object, message: str) -> None:
    with pytest.raises(RunSpecError, match=message):
        parse_spec(raw)


def test_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text("{")
    with pytest.raises(RunSpecError, match="is not valid JSON"):
        load_spec(path)


def test_exit_reasons() -> None:
    assert exit_reason(0) is None
    assert "out of memory" in (exit_reason(-signal.SIGKILL) or "")
    assert exit_reason(143) == "cancelled"
    assert exit_reason(-signal.SIGSEGV) == "the training process was stopped by SIGSEGV"
    assert exit_reason(1) == "the training process exited with status 1"
