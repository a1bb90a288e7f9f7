"""The real runner in a subprocess: events, files on disk, failures, cancel and kill."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from arkor.engine.registry import EMBEDDED_MODEL_NAME
from arkor.training.adapters import check_adapter_compatible
from arkor.training.demo import demo_eval_path

from .conftest import (
    FAST_CONFIG,
    RunnerResult,
    make_spec,
    read_events_until,
    run_runner,
    start_runner,
)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LOG_FIELDS = {"type", "jobId", "timestamp", "step", "loss", "evalLoss", "learningRate", "epoch",
              "samplesPerSecond"}


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory: pytest.TempPathFactory, embedded_model_dir: Path
             ) -> tuple[RunnerResult, Path]:
    tmp = tmp_path_factory.mktemp("fast-run")
    eval_file = tmp / "eval.jsonl"
    eval_file.write_text("".join(demo_eval_path().read_text().splitlines(keepends=True)[:4]))
    spec = make_spec(tmp, embedded_model_dir, {**FAST_CONFIG, "evalSteps": 2},
                     eval_dataset=eval_file)
    return run_runner(spec), tmp / "out"


def test_event_sequence(fast_run: tuple[RunnerResult, Path]) -> None:
    result, _ = fast_run
    assert result.returncode == 0, result.stderr
    assert [(e["type"], e.get("step")) for e in result.events] == [
        ("training.started", None),
        ("training.log", 1), ("training.log", 2), ("checkpoint.saved", 2),
        ("training.log", 3), ("training.log", 4), ("checkpoint.saved", 4),
        ("training.completed", None),
    ]
    for event in result.events:
        assert event["jobId"] == "job-test"
        assert TIMESTAMP.match(event["timestamp"])
    stamps = [e["timestamp"] for e in result.events]
    assert stamps == sorted(stamps)
    assert "step 4/4" in result.stderr


def test_event_payloads(fast_run: tuple[RunnerResult, Path]) -> None:
    result, out = fast_run
    started, *middle, completed = result.events
    meta = started["metadata"]
    assert meta["baseModel"] == EMBEDDED_MODEL_NAME
    assert (meta["device"], meta["trainableParams"], meta["totalSteps"]) == ("cpu", 460800, 4)
    assert (meta["numExamples"], meta["numEvalExamples"]) == (100, 4)
    assert meta["config"]["learningRate"] == 2e-3

    logs = [e for e in middle if e["type"] == "training.log"]
    for log in logs:
        assert set(log) == LOG_FIELDS
        assert log["loss"] > 0 and log["samplesPerSecond"] > 0
    assert [log["evalLoss"] is not None for log in logs] == [False, True, False, True]
    assert [log["learningRate"] for log in logs] == pytest.approx([2e-3, 1.5e-3, 1e-3, 5e-4])
    assert [log["epoch"] for log in logs] == pytest.approx([0.02, 0.04, 0.06, 0.08])

    for checkpoint in (e for e in middle if e["type"] == "checkpoint.saved"):
        names = [a["pathname"] for a in checkpoint["artifacts"]]
        step = checkpoint["step"]
        assert names == [f"checkpoints/step-{step}/adapter_config.json",
                         f"checkpoints/step-{step}/adapter_model.safetensors"]
        for artifact in checkpoint["artifacts"]:
            assert (out / artifact["pathname"]).stat().st_size == artifact["bytes"]

    assert [a["pathname"] for a in completed["artifacts"]] == [
        "final/adapter_config.json", "final/adapter_model.safetensors"]
    metrics = completed["metrics"]
    assert metrics["steps"] == metrics["totalSteps"] == 4
    assert metrics["evalLoss"] == pytest.approx(logs[-1]["evalLoss"], rel=1e-4)
    assert math.isfinite(metrics["finalLoss"]) and metrics["finalLoss"] > 0
    assert metrics["finalLoss"] == pytest.approx(logs[-1]["loss"], rel=1e-4)
    assert metrics["totalTime"] >= metrics["trainRuntimeSeconds"] > 0
    assert metrics["tokensPerSecond"] > 0 and metrics["peakRssMb"] > 100


def test_adapters_on_disk(fast_run: tuple[RunnerResult, Path], embedded_model_dir: Path
                          ) -> None:
    _, out = fast_run
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-4"]
    for adapter in (out / "checkpoints" / "step-2", out / "checkpoints" / "step-4",
                    out / "final"):
        assert sorted(p.name for p in adapter.iterdir()) == [
            "adapter_config.json", "adapter_model.safetensors"]
        config = json.loads((adapter / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == EMBEDDED_MODEL_NAME
        info = check_adapter_compatible(adapter, embedded_model_dir)
        assert (info.r, info.adapted_modules) == (8, 60)


def greedy(model: Any, tokenizer: Any, messages: list[dict[str, str]]) -> str:
    import torch

    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_final_adapter_changes_greedy_output(fast_run: tuple[RunnerResult, Path],
                                             embedded_model_dir: Path, tokenizer: Any) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _, out = fast_run
    ticket = json.loads(demo_eval_path().read_text().splitlines()[-1])["messages"][:2]
    base = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    before = greedy(base, tokenizer, ticket)
    tuned = PeftModel.from_pretrained(base, out / "final")
    after = greedy(tuned, tokenizer, ticket)
    assert after != before


def test_bad_dataset_fails_before_the_job_starts(tmp_path: Path, embedded_model_dir: Path
                                                 ) -> None:
    data = tmp_path / "bad.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "q"},
                                    {"role": "assistant", "content": "a"}]})
    data.write_text("\n".join([good, "{oops", good, '{"messages": []}']) + "\n")
    uploaded = {**FAST_CONFIG, "datasetSource": {"type": "upload", "uploadId": "d1"}}
    result = run_runner(make_spec(tmp_path, embedded_model_dir, uploaded, dataset=data))
    assert result.returncode == 1
    [failed] = result.events
    assert failed["type"] == "training.failed"
    assert failed["step"] is None  # it never began training
    assert failed["error"].splitlines() == [
        "Invalid dataset: 2 problems found",
        "  line 2: invalid JSON (Expecting property name enclosed in double quotes at column 2)",
        '  line 4: "messages" must be a non-empty list',
    ]
    assert not (tmp_path / "out").exists()
    # A file on the server's disk (FAST_CONFIG's source is "local"): no content, lines only.
    result = run_runner(make_spec(tmp_path, embedded_model_dir, FAST_CONFIG, dataset=data))
    assert [e["error"] for e in result.events] == [
        "Invalid dataset: not a valid chat dataset (2 problems on lines 2, 4); details are "
        "not shown for files read from the server's disk"]


def test_bad_config_names_the_field(tmp_path: Path, embedded_model_dir: Path) -> None:
    result = run_runner(make_spec(tmp_path, embedded_model_dir,
                                  {**FAST_CONFIG, "learningRate": -1}))
    assert result.returncode == 1
    assert [(e["type"], e["error"]) for e in result.events] == [
        ("training.failed", "learningRate must be a positive number")]


def test_unreadable_spec_and_usage(tmp_path: Path) -> None:
    result = run_runner(tmp_path / "missing.json")
    assert result.returncode == 1
    [failed] = result.events
    assert failed["jobId"] == ""
    assert failed["error"].startswith("cannot read spec file")
    usage = subprocess.run([sys.executable, "-m", "arkor.training.runner"], capture_output=True,
                           text=True)
    assert (usage.returncode, usage.stdout) == (2, "")


@pytest.mark.parametrize(("signum", "returncode"), [(signal.SIGTERM, 143),
                                                    (signal.SIGINT, 130)])
def test_signal_cancels_within_seconds(tmp_path: Path, embedded_model_dir: Path,
                                       running: list[subprocess.Popen[str]], signum: int,
                                       returncode: int) -> None:
    config = {**FAST_CONFIG, "maxSteps": 500, "batchSize": 8, "maxLength": 128}
    proc = start_runner(make_spec(tmp_path, embedded_model_dir, config))
    running.append(proc)
    seen: list[dict[str, Any]] = []
    read_events_until(proc, lambda e: e["type"] == "training.log", seen)
    sent = time.monotonic()
    proc.send_signal(signum)
    proc.wait(timeout=30)
    elapsed = time.monotonic() - sent
    assert proc.stdout is not None
    seen.extend(json.loads(line) for line in proc.stdout)
    assert proc.returncode == returncode
    assert elapsed < 5, f"took {elapsed:.1f}s to stop"
    last = seen[-1]
    assert (last["type"], last["error"]) == ("training.failed", "cancelled")
    logged = [e["step"] for e in seen if e["type"] == "training.log"]
    assert last["step"] >= max(logged) >= 1  # a step can end before its log row is out
    assert not (tmp_path / "out" / "final").exists()


def test_sigkill_never_leaves_a_partial_checkpoint(tmp_path: Path, embedded_model_dir: Path,
                                                   running: list[subprocess.Popen[str]]
                                                   ) -> None:
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "system", "content": "Reply OK."}, {"role": "user", "content": f"ping {i}"},
        {"role": "assistant", "content": "OK"}]}) + "\n" for i in range(8)))
    config = {**FAST_CONFIG, "maxSteps": 1000, "batchSize": 1, "maxLength": 32, "saveSteps": 1}
    proc = start_runner(make_spec(tmp_path, embedded_model_dir, config, dataset=data))
    running.append(proc)
    read_events_until(proc, lambda e: e["type"] == "checkpoint.saved" and e["step"] >= 3, [])
    time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=30)
    checkpoints = tmp_path / "out" / "checkpoints"
    visible = [p for p in checkpoints.iterdir() if not p.name.startswith(".")]
    assert len(visible) >= 3
    for adapter in visible:
        assert re.fullmatch(r"step-\d+", adapter.name)
        check_adapter_compatible(adapter, embedded_model_dir)
