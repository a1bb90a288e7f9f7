from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from arkor.contract.artifacts import checkpoint_dir
from arkor.training.checkpoints import remove_stale_staging, save_adapter


class HalfWritingModel:
    """Writes part of an adapter and then dies, like a process killed mid-save."""

    def save_pretrained(self, path: str, **_: Any) -> None:
        (Path(path) / "adapter_config.json").write_text("{}")
        raise OSError("disk full")


def test_failed_save_leaves_no_checkpoint(tmp_path: Path) -> None:
    target = checkpoint_dir(tmp_path, 5)
    with pytest.raises(OSError, match="disk full"):
        save_adapter(HalfWritingModel(), target, base_model_name="m", output_dir=tmp_path)
    assert list(target.parent.iterdir()) == []


def test_stale_staging_dirs_are_removed(tmp_path: Path) -> None:
    keep = checkpoint_dir(tmp_path, 1)
    keep.mkdir(parents=True)
    stale = keep.parent / ".staging-step-2-abc"
    stale.mkdir()
    (stale / "adapter_config.json").write_text("{}")
    remove_stale_staging(tmp_path)
    assert [p.name for p in keep.parent.iterdir()] == ["step-1"]
