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


def test_failed_event_always_carries_step_null_when_unknown() -> None:
    assert events.failed("j", error="boom")["step"] is None
    assert events.failed("j", error="cancelled", step=4)["step"] == 4


def test_completed_metrics_carry_the_results_null_when_unknown() -> None:
    event = events.completed("j", final_loss=0.12345678, total_steps=30, total_time=41.23456,
                             artifacts=[], details={"trainLoss": 0.8, "finalLoss": "stale"})
    assert event["metrics"] == {"trainLoss": 0.8, "finalLoss": 0.123457, "totalSteps": 30,
                                "totalTime": 41.2346}
    unknown = events.completed("j", final_loss=float("nan"), total_steps=None, total_time=None,
                               artifacts=[])
    assert unknown["metrics"] == {"finalLoss": None, "totalSteps": None, "totalTime": None}
    json.dumps(unknown, allow_nan=False)


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
    line = json.dumps(events.completed("j", final_loss=0.5, total_steps=1, total_time=1.0,
                                       artifacts=[]))
    assert events.parse_event_line(line)["type"] == "training.completed"  # type: ignore[index]
    assert events.parse_event_line("Loading weights: 100%") is None
    assert events.parse_event_line('{"type": "something.else"}') is None
    assert events.parse_event_line(b"\xff") is None
