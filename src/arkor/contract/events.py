"""The job events of the contract (§3.3): their type names and which of them end a job.

The runner writes the first five; the control plane adds ``training.cancelled`` when a job is
cancelled. The server's SSE stream, the SDK's trainer and the Studio's job page (through the
served ``contract.js``) all read these names here.
"""

from __future__ import annotations

from typing import Final

STARTED: Final = "training.started"
LOG: Final = "training.log"
CHECKPOINT: Final = "checkpoint.saved"
COMPLETED: Final = "training.completed"
FAILED: Final = "training.failed"
CANCELLED: Final = "training.cancelled"

RUNNER_EVENTS: Final = (STARTED, LOG, CHECKPOINT, COMPLETED, FAILED)
"""What the runner may write on its stdout."""
RUNNER_TERMINAL: Final = (COMPLETED, FAILED)
"""The runner's last event: one of these, or it died."""
EVENT_TYPES: Final = (*RUNNER_EVENTS, CANCELLED)
TERMINAL_EVENTS: Final = (COMPLETED, FAILED, CANCELLED)
"""After one of these a job's event stream ends."""
TERMINAL_STATUS: Final = {COMPLETED: "completed", FAILED: "failed", CANCELLED: "cancelled"}
"""The job status each terminal event leaves behind."""

RESULT_METRICS: Final = ("finalLoss", "totalSteps", "totalTime")
"""The ``metrics`` every ``training.completed`` carries, each null when unknown: the loss of
the last step, the optimizer steps run, and the seconds from ``training.started`` to the end.
(``training.failed`` carries ``step``: the last step reached, or null.)"""
