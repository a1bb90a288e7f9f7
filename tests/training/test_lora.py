from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from arkor.contract.job_config import parse_job_config, plan_steps
from arkor.engine.registry import EMBEDDED_MODEL_NAME
from arkor.training.dataset import validate_dataset
from arkor.training.demo import DEMO_CONFIG, demo_dataset_path, demo_eval_path
from arkor.training.errors import JobConfigError
from arkor.training.lora import LoraRun, lr_multiplier


def test_linear_schedule_with_warmup() -> None:
    factor = lr_multiplier("linear", warmup=2, total=6)
    assert [factor(s) for s in range(6)] == [0.0, 0.5, 1.0, 0.75, 0.5, 0.25]


def test_constant_and_cosine_schedules() -> None:
    assert [lr_multiplier("constant", 1, 4)(s) for s in range(4)] == [0.0, 1.0, 1.0, 1.0]
    cosine = lr_multiplier("cosine", 0, 4)
    assert cosine(0) == 1.0
    assert math.isclose(cosine(2), 0.5)
    assert cosine(4) == pytest.approx(0.0)


def test_step_plan() -> None:
    base = {**DEMO_CONFIG}
    del base["maxSteps"]
    assert plan_steps(parse_job_config(base), 100).total_steps == 13  # one epoch, batch 8
    assert plan_steps(parse_job_config({**base, "numTrainEpochs": 2.5}), 100).total_steps == 33
    assert plan_steps(parse_job_config({**base, "maxSteps": 5}), 100).total_steps == 5
    assert plan_steps(parse_job_config({**base, "dryRun": True}), 100).total_steps == 2


def train_in_process(base_dir: Path, out: Path, **overrides: Any) -> list[dict[str, Any]]:
    config = parse_job_config({**DEMO_CONFIG, "maxSteps": 2, "batchSize": 2, "maxLength": 96,
                               "saveSteps": 0, **overrides})
    events: list[dict[str, Any]] = []
    run = LoraRun(config, job_id="j", base_model_dir=base_dir,
                  base_model_name=EMBEDDED_MODEL_NAME, output_dir=out, emit=events.append)
    train = list(validate_dataset(demo_dataset_path()).examples)
    held = list(validate_dataset(demo_eval_path()).examples)[:2]
    run.prepare(train, held)
    run.train()
    return events


def stable(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items()
            if k not in ("timestamp", "samplesPerSecond", "metrics")}


def test_same_seed_same_run_and_eval_rows(embedded_model_dir: Path, tmp_path: Path) -> None:
    first = train_in_process(embedded_model_dir, tmp_path / "a", seed=1, loggingSteps=2,
                             evalSteps=1)
    again = train_in_process(embedded_model_dir, tmp_path / "b", seed=1, loggingSteps=2,
                             evalSteps=1)
    other = train_in_process(embedded_model_dir, tmp_path / "c", seed=2, loggingSteps=2,
                             evalSteps=1)
    assert [stable(e) for e in first] == [stable(e) for e in again]
    assert first[-2]["loss"] != other[-2]["loss"]

    eval_only, both, done = first
    assert (eval_only["type"], eval_only["step"], eval_only["loss"]) == ("training.log", 1, None)
    assert eval_only["evalLoss"] > 0
    assert (both["step"], both["loss"] > 0, both["evalLoss"] > 0) == (2, True, True)
    assert done["type"] == "training.completed"
    assert done["metrics"]["evalLoss"] == pytest.approx(both["evalLoss"], rel=1e-5)
    assert (tmp_path / "a" / "final" / "adapter_model.safetensors").is_file()


def test_unknown_target_module_is_a_config_error(embedded_model_dir: Path,
                                                 tmp_path: Path) -> None:
    with pytest.raises(JobConfigError) as caught:
        train_in_process(embedded_model_dir, tmp_path, targetModules=["q_proj", "qkv_proj"])
    assert caught.value.field == "targetModules"
    assert "qkv_proj" in str(caught.value)
    assert "its linear layers: down_proj, gate_proj, k_proj, lm_head, o_proj" in str(caught.value)
