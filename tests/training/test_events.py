from __future__ import annotations

import io
import json
import re

from arkor.training import events


def test_timestamps_are_utc_with_z() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", events.utc_timestamp())


def test_log_event_has_every_contract_field_and_nulls_for_missing() -> None:
    event = events.log("j1", step=3, loss=0.5, eval_loss=None, learning_rate=1e-3,
                       epoch=0.25, samples_per_second=float("nan"))
    assert {k: v for k, v in event.items() if k != "timestamp"} == {
        "type": "training.log", "jobId": "j1", "step": 3, "loss": 0.5, "evalLoss": None,
        "learningRate": 0.001, "epoch": 0.25, "samplesPerSecond": None}


def test_failed_event_step_is_optional() -> None:
    assert "step" not in events.failed("j", error="boom")
    assert events.failed("j", error="cancelled", step=4)["step"] == 4


def test_writer_emits_one_json_object_per_line() -> None:
    stream = io.StringIO()
    writer = events.EventWriter(stream)
    writer.emit(events.started("j", {"a": 1}))
    writer.emit(events.checkpoint("j", step=2, artifacts=[{"pathname": "x", "bytes": 1}]))
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["training.started",
                                                            "checkpoint.saved"]
    assert writer.last_type == "checkpoint.saved"


def test_parse_event_line() -> None:
    line = json.dumps(events.completed("j", metrics={}, artifacts=[]))
    assert events.parse_event_line(line)["type"] == "training.completed"  # type: ignore[index]
    assert events.parse_event_line("Loading weights: 100%") is None
    assert events.parse_event_line('{"type": "something.else"}') is None
    assert events.parse_event_line(b"\xff") is None
