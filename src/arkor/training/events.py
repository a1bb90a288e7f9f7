"""The job events (names: :mod:`arkor.contract.events`), built as dicts, written as JSON lines.

The runner writes one JSON object per line on its stdout and nothing else; the control plane
reads the lines with :func:`parse_event_line`, stores them and streams them as SSE.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import IO, Any

from arkor.contract.events import (
    CHECKPOINT,
    COMPLETED,
    FAILED,
    LOG,
    RESULT_METRICS,
    RUNNER_EVENTS,
    STARTED,
)

Event = dict[str, Any]


def utc_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: float | int | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _event(kind: str, job_id: str, **payload: Any) -> Event:
    return {"type": kind, "jobId": job_id, "timestamp": utc_timestamp(), **payload}


def started(job_id: str, metadata: dict[str, Any]) -> Event:
    return _event(STARTED, job_id, metadata=metadata)


def log(job_id: str, *, step: int, loss: float | None, eval_loss: float | None,
        learning_rate: float | None, epoch: float | None,
        samples_per_second: float | None) -> Event:
    return _event(LOG, job_id, step=step, loss=_number(loss), evalLoss=_number(eval_loss),
                  learningRate=_number(learning_rate), epoch=_number(epoch, 4),
                  samplesPerSecond=_number(samples_per_second, 4))


def checkpoint(job_id: str, *, step: int, artifacts: list[dict[str, Any]]) -> Event:
    return _event(CHECKPOINT, job_id, step=step, artifacts=artifacts)


def completed(job_id: str, *, final_loss: float | None, total_steps: int | None,
              total_time: float | None, artifacts: list[dict[str, Any]],
              details: dict[str, Any] | None = None) -> Event:
    """``metrics`` holds the contract's results (:data:`RESULT_METRICS`, null when unknown or
    not finite) after any ``details`` the trainer adds."""
    results = dict(zip(RESULT_METRICS, (_number(final_loss), total_steps, _number(total_time)),
                       strict=True))
    return _event(COMPLETED, job_id, metrics={**(details or {}), **results}, artifacts=artifacts)


def failed(job_id: str, *, error: str, step: int | None = None) -> Event:
    """``step`` is the last step reached, null when training never began or it is unknown."""
    return _event(FAILED, job_id, error=error, step=step)


class EventWriter:
    """Writes events as JSON lines and flushes each, so the reader sees them as they happen."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.last_type: str | None = None

    def emit(self, event: Event) -> None:
        self._stream.write(json.dumps(event, separators=(",", ":"), allow_nan=False) + "\n")
        self._stream.flush()
        self.last_type = event["type"]


def parse_event_line(line: str | bytes) -> Event | None:
    """One runner stdout line as an event, or ``None`` for anything that is not one."""
    try:
        event = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict) or event.get("type") not in RUNNER_EVENTS:
        return None
    return event
