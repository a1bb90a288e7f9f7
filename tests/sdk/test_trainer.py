"""How trainer options become the job's camelCase config (no server needed)."""

from __future__ import annotations

import inspect

from arkor import create_async_trainer, create_trainer
from arkor.sdk._trainer import CONFIG_NAMES
from arkor.training.config import FIELDS


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


def test_every_option_is_a_config_field_the_server_knows() -> None:
    assert set(CONFIG_NAMES.values()) <= {spec.wire for spec in FIELDS}
    params = inspect.signature(create_trainer).parameters
    assert set(CONFIG_NAMES) <= set(params)
    assert params.keys() == inspect.signature(create_async_trainer).parameters.keys()


def test_cancel_before_start_is_a_no_op() -> None:
    assert create_trainer(name="t", dataset={"type": "upload", "uploadId": "x"}).cancel() is None
