from __future__ import annotations

from typing import Any

import pytest

from arkor.contract.job_config import (
    FIELDS,
    DatasetSource,
    TrainingConfig,
    field_default,
    parse_job_config,
)
from arkor.training.errors import JobConfigError

MINIMAL: dict[str, Any] = {
    "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "datasetSource": {"type": "local", "path": "/data/train.jsonl"},
}


def test_minimal_config_takes_the_documented_defaults() -> None:
    config = parse_job_config(MINIMAL)
    assert config.model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert config.dataset_source == DatasetSource("local", path="/data/train.jsonl")
    assert (config.lora_r, config.lora_alpha, config.max_length) == (8, 16, 256)
    assert (config.max_steps, config.num_train_epochs) == (None, 1.0)
    assert (config.learning_rate, config.batch_size, config.warmup_steps) == (1e-3, 8, 0)
    assert config.target_modules == ("q_proj", "v_proj")
    assert config.lr_scheduler_type == "linear"
    assert config.train_on_responses_only is True
    assert config.eval_steps is None
    assert config.dry_run is False


def test_camel_case_fields_are_parsed() -> None:
    config = parse_job_config({
        **MINIMAL, "loraR": 16, "loraAlpha": 32, "maxLength": 128, "maxSteps": 30,
        "learningRate": 5e-4, "batchSize": 4, "warmupSteps": 3, "loggingSteps": 5,
        "saveSteps": 10, "evalSteps": 10, "dryRun": True, "seed": 7,
        "targetModules": "q_proj, k_proj,v_proj", "weightDecay": 0.01,
        "lrSchedulerType": "cosine", "trainOnResponsesOnly": False, "loadIn4bit": False,
        "optim": "adamw_8bit", "datasetFormat": {"type": "chatml"},
    })
    assert (config.lora_r, config.lora_alpha, config.max_steps, config.batch_size) == \
        (16, 32.0, 30, 4)
    assert config.target_modules == ("q_proj", "k_proj", "v_proj")
    assert (config.save_steps, config.eval_steps, config.seed) == (10, 10, 7)
    assert config.lr_scheduler_type == "cosine"
    assert config.train_on_responses_only is False
    assert config.dry_run is True


def test_unknown_fields_are_kept_and_round_trip() -> None:
    raw = {**MINIMAL, "datasetSplit": "train", "someFutureField": {"a": 1}, "loraR": 4}
    config = parse_job_config(raw)
    assert config.extra == {"datasetSplit": "train", "someFutureField": {"a": 1}}
    wire = config.to_wire()
    assert wire["someFutureField"] == {"a": 1}
    assert wire["loraR"] == 4
    assert parse_job_config(wire) == config


def test_null_fields_take_defaults() -> None:
    assert parse_job_config({**MINIMAL, "maxSteps": None, "loraR": None}).lora_r == 8


@pytest.mark.parametrize(("source", "expected"), [
    ({"type": "upload", "uploadId": "up_123"}, DatasetSource("upload", upload_id="up_123")),
    ({"type": "huggingface", "name": "/data/triage", "split": "test", "subset": "en"},
     DatasetSource("huggingface", name="/data/triage", split="test", subset="en")),
])
def test_dataset_source_shapes(source: dict[str, Any], expected: DatasetSource) -> None:
    assert parse_job_config({**MINIMAL, "datasetSource": source}).dataset_source == expected


@pytest.mark.parametrize(("field", "value", "message"), [
    ("model", "", "model must be a non-empty model name"),
    ("model", 3, "model must be a non-empty model name"),
    ("datasetSource", "train.jsonl", "datasetSource must be an object"),
    ("datasetSource", {"type": "local"}, "datasetSource needs a non-empty string 'path'"),
    ("datasetSource", {"type": "upload"}, "datasetSource needs a non-empty string 'uploadId'"),
    ("datasetSource", {"type": "blob", "url": "https://x"}, 'datasetSource type "blob"'),
    ("datasetSource", {"type": "s3"}, "datasetSource type must be"),
    ("loraR", 0, "loraR must be a positive integer"),
    ("loraR", 2.5, "loraR must be a positive integer"),
    ("loraR", True, "loraR must be a positive integer"),
    ("loraAlpha", -1, "loraAlpha must be a positive number"),
    ("loraDropout", 1.0, "loraDropout must be a number >= 0 and < 1"),
    ("maxLength", 8, "maxLength must be an integer between 16 and"),
    ("maxSteps", 0, "maxSteps must be a positive integer"),
    ("numTrainEpochs", 0, "numTrainEpochs must be a positive number"),
    ("learningRate", 0, "learningRate must be a positive number"),
    ("learningRate", "1e-3", "learningRate must be a positive number"),
    ("learningRate", float("nan"), "learningRate must be a positive number"),
    ("batchSize", -8, "batchSize must be a positive integer"),
    ("warmupSteps", -1, "warmupSteps must be an integer >= 0"),
    ("loggingSteps", 0, "loggingSteps must be a positive integer"),
    ("saveSteps", -1, "saveSteps must be an integer >= 0"),
    ("evalSteps", "10", "evalSteps must be a positive integer"),
    ("evalFraction", 0.9, "evalFraction must be a number > 0 and <= 0.5"),
    ("dryRun", "yes", "dryRun must be true or false"),
    ("seed", 1.5, "seed must be an integer"),
    ("targetModules", [], "targetModules must be a non-empty list"),
    ("targetModules", ["q_proj", 3], "targetModules must be a non-empty list"),
    ("weightDecay", -0.1, "weightDecay must be a number >= 0"),
    ("lrSchedulerType", "polynomial", "lrSchedulerType must be one of linear, constant, cosine"),
    ("trainOnResponsesOnly", 1, "trainOnResponsesOnly must be true or false"),
    ("loadIn4bit", True, "loadIn4bit is not supported"),
    ("optim", "sgd", "optim must be an AdamW optimizer name"),
    ("datasetFormat", {"type": "alpaca"}, "datasetFormat must be"),
    ("maxGradNorm", 0, "maxGradNorm must be a positive number"),
    ("gpuTypes", "A100", "gpuTypes must be a list of GPU type names"),
    ("gpuTypes", ["A100", ""], "gpuTypes must be a list of GPU type names"),
    ("gpuTypes", [100], "gpuTypes must be a list of GPU type names"),
])
def test_each_bad_field_is_named(field: str, value: Any, message: str) -> None:
    with pytest.raises(JobConfigError) as caught:
        parse_job_config({**MINIMAL, field: value})
    assert caught.value.field == field
    assert str(caught.value).startswith(message)


def test_gpu_types_are_a_list_of_names_and_none_by_default() -> None:
    assert parse_job_config(MINIMAL).gpu_types == ()
    assert parse_job_config({**MINIMAL, "gpuTypes": []}).gpu_types == ()
    config = parse_job_config({**MINIMAL, "gpuTypes": ["A100", " H100 "]})
    assert config.gpu_types == ("A100", "H100")
    assert config.to_wire()["gpuTypes"] == ["A100", "H100"]


@pytest.mark.parametrize("field", ["model", "datasetSource"])
def test_required_fields(field: str) -> None:
    raw = {k: v for k, v in MINIMAL.items() if k != field}
    with pytest.raises(JobConfigError, match=f"^{field} is required$"):
        parse_job_config(raw)


def test_config_must_be_an_object() -> None:
    with pytest.raises(JobConfigError, match="config must be a JSON object"):
        parse_job_config([])  # type: ignore[arg-type]


def test_every_field_has_a_dataclass_attribute_and_help() -> None:
    attrs = set(TrainingConfig.__dataclass_fields__)
    for spec in FIELDS:
        assert spec.attr in attrs
        assert spec.help
    assert field_default("learningRate") == 1e-3
