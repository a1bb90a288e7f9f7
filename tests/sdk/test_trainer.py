"""How trainer options become the job's camelCase config (no server needed)."""

from __future__ import annotations

import inspect
from typing import get_type_hints

import pytest

from arkor import (
    CompletedInfo,
    FailedInfo,
    JobEvent,
    Trainer,
    TrainingJob,
    create_async_trainer,
    create_trainer,
)
from arkor.contract.events import COMPLETED, FAILED
from arkor.contract.job_config import FIELDS, TrainerOptions, TrainingConfig
from arkor.sdk._trainer import TrainerArguments, TrainerSpec


def test_only_given_options_are_sent_in_camel_case(tmp_path) -> None:
    trainer = create_trainer(name="t", dataset={"type": "local", "path": "/d.jsonl"},
                             lora_r=4, max_steps=10, learning_rate=2e-4, dry_run=False,
                             extra_config={"evalFraction": 0.2, "maxSteps": 12})
    assert trainer.spec.upload_path() is None
    assert trainer.spec.config({"type": "local", "path": "/d.jsonl"}) == {
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "datasetSource": {"type": "local", "path": "/d.jsonl"},
        "loraR": 4, "learningRate": 2e-4, "dryRun": False, "evalFraction": 0.2,
        "maxSteps": 12,  # extra_config has the last word
    }
    assert create_trainer(name="t", dataset=tmp_path / "x.jsonl").spec.upload_path() == \
        tmp_path / "x.jsonl"


def test_the_options_are_exactly_the_optional_config_fields() -> None:
    assert set(TrainerOptions.__annotations__) == {
        spec.attr for spec in FIELDS if not spec.required}
    params = inspect.signature(create_trainer).parameters
    assert params["arguments"].kind is inspect.Parameter.VAR_KEYWORD
    assert params.keys() == inspect.signature(create_async_trainer).parameters.keys()
    assert set(TrainerOptions.__annotations__) <= set(TrainerArguments.__annotations__)


def test_option_types_agree_with_the_parsed_config() -> None:
    parsed = get_type_hints(TrainingConfig)
    for name, hint in get_type_hints(TrainerOptions).items():
        if hint in (int, float, bool, str):
            assert hint is parsed[name] or parsed[name] == hint | None, name


def test_every_option_reaches_the_config_under_its_wire_name() -> None:
    options = {spec.attr: 1 for spec in FIELDS if not spec.required}
    config = create_trainer(name="t", dataset={"type": "upload", "uploadId": "x"},
                            **options).spec.config({"type": "upload", "uploadId": "x"})
    assert set(config) == {spec.wire for spec in FIELDS}


def test_an_unknown_option_is_a_type_error_listing_the_known_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown trainer option.*lora_rank.*lora_r"):
        create_trainer(name="t", dataset={"type": "upload", "uploadId": "x"}, lora_rank=4)


def test_cancel_before_start_is_a_no_op() -> None:
    assert create_trainer(name="t", dataset={"type": "upload", "uploadId": "x"}).cancel() is None


def _job(status: str) -> TrainingJob:
    return TrainingJob(id="j", org_id="o", project_id="p", name="t", status=status, config={},
                       error="boom" if status == "failed" else None, created_at="now")


def test_terminal_callbacks_get_metrics_and_step_or_their_defaults() -> None:
    """What a server says is passed on; an older server's events, without ``metrics`` or
    ``step``, give ``{}`` and ``None``, and the dataclasses still build from two arguments."""
    spec = TrainerSpec(name="t", dataset={}, callbacks={"on_completed": print,
                                                        "on_failed": print})
    metrics = {"finalLoss": 0.5, "totalSteps": 4, "totalTime": 1.5}
    for data in ({"metrics": metrics}, {}):
        fired = Trainer(spec)._finish(_job("completed"), JobEvent("1", COMPLETED, data))
        assert fired == (print, CompletedInfo(_job("completed"), [],
                                              metrics=data.get("metrics", {})))
    for data, step in (({"error": "x", "step": 3}, 3), ({"error": "x"}, None),
                       ({"error": "x", "step": True}, None)):
        fired = Trainer(spec)._finish(_job("failed"), JobEvent("2", FAILED, data))
        assert fired == (print, FailedInfo(_job("failed"), "x", step=step))
    assert CompletedInfo(_job("completed"), []).metrics == {}
    assert FailedInfo(_job("failed"), "x").step is None
