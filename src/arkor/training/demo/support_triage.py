"""Support-ticket triage: 100 training tickets (34 billing, 33 bug, 33 other) and 24 held out.

Every example has the same system prompt and a one-line answer ``LABEL: <label>``. The
tickets were written by hand for arkor; none comes from a real customer.

``DEMO_CONFIG`` is the JobConfig the README quick start uses; on a 2-core CPU it learns the
answer format in about 30 steps (see docs/training.md for the measured figures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arkor.engine.registry import EMBEDDED_MODEL_NAME

DEMO_SYSTEM_PROMPT = ("You triage customer support tickets. Reply with exactly one line: "
                      "LABEL: billing, LABEL: bug or LABEL: other.")
DEMO_LABELS = ("billing", "bug", "other")
_HERE = Path(__file__).parent


def demo_dataset_path() -> Path:
    return _HERE / "support_triage.jsonl"


def demo_eval_path() -> Path:
    return _HERE / "support_triage_eval.jsonl"


DEMO_CONFIG: dict[str, Any] = {
    "model": EMBEDDED_MODEL_NAME,
    "datasetSource": {"type": "local", "path": str(demo_dataset_path())},
    "maxSteps": 30,
    "batchSize": 8,
    "maxLength": 128,
    "learningRate": 1e-3,
    "loraR": 8,
    "loraAlpha": 16,
    "targetModules": ["q_proj", "v_proj"],
    "loggingSteps": 1,
    "saveSteps": 10,
    "seed": 42,
}
