"""docs/training.md documents every JobConfig field with its real default, and every event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arkor.contract.events import RUNNER_EVENTS as EVENT_TYPES
from arkor.contract.job_config import FIELDS, ConfigField, field_default

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def documented_default(wire: str) -> str:
    value = field_default(wire)
    return f"`{json.dumps(list(value) if isinstance(value, tuple) else value)}`"


@pytest.mark.parametrize("spec", FIELDS, ids=[f.wire for f in FIELDS])
def test_every_config_field_is_documented_with_its_default(spec: ConfigField) -> None:
    default = "required" if spec.required else documented_default(spec.wire)
    rows = [line for line in DOC.read_text().splitlines()
            if line.startswith(f"| `{spec.wire}` |")]
    assert rows, f"{spec.wire} is missing from the JobConfig table"
    assert rows[0].split(" | ")[1] == default


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_every_event_type_has_an_example(kind: str) -> None:
    assert f'{{"type": "{kind}"' in DOC.read_text()
