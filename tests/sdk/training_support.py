"""What the jobs tests share: a control plane that can train without converting the model
again, a tiny chat dataset, and settings that keep a real run to a few steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"
TINY = {"maxSteps": 4, "batchSize": 4, "maxLength": 64, "saveSteps": 2, "loggingSteps": 1}


def share_embedded_model(cloud: Any, embedded_model_dir: Path) -> None:
    """Point the server's models/ at the model converted once per checkout (see conftest)."""
    target = Path(cloud.settings.models_dir) / embedded_model_dir.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(embedded_model_dir, target_is_directory=True)


def write_chat_dataset(path: Path, count: int = 16) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": str(2 * i)}]} for i in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_bad_dataset(path: Path) -> Path:
    good = json.dumps({"messages": [{"role": "user", "content": "hi"},
                                    {"role": "assistant", "content": "hello"}]})
    path.write_text(f"{good}\n{{not json\n{good}\n{json.dumps({'messages': []})}\n",
                    encoding="utf-8")
    return path


def copy_final_adapter(cloud: Any, job_id: str, dest: Path) -> Path:
    final = Path(cloud.settings.artifacts_dir) / job_id / "final"
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(final / name, dest / name)
    return dest


def break_target_modules(adapter_dir: Path) -> Path:
    """Make a copy's config target a module the base model does not have."""
    config_path = adapter_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["target_modules"] = ["no_such_proj"]
    config_path.write_text(json.dumps(config))
    return adapter_dir
