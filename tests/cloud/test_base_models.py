"""Operator-registered base models: listed, targetable, and refused when malformed."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from arkor.cloud.settings import Settings
from arkor.engine.registry import (
    BaseModelSpecError,
    parse_base_model_option,
    parse_base_models_env,
)
from arkor.server import create_app
from tests.servers import LiveServer
from tests.workspace import new_workspace


def hf_dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return path


def test_registered_directory_is_listed_and_targetable(tmp_path: Path) -> None:
    spec = parse_base_model_option(f"acme/tiny={hf_dir(tmp_path, 'tiny')}")
    settings = Settings(data_dir=tmp_path / "data", base_models=(spec,))
    with LiveServer(create_app(settings)) as url:
        ws = new_workspace(url)
        models = ws.client.list_base_models()
        assert [(m.name, m.source) for m in models] == [
            ("HuggingFaceTB/SmolLM2-135M-Instruct", "embedded"), ("acme/tiny", "directory")
        ]
        created = ws.client.create_deployment(
            ws.scope, slug="acme-tiny", target={"kind": "base_model", "baseModel": "acme/tiny"}
        )
        assert created.target.base_model == "acme/tiny"
        listed = httpx.get(f"{url}/v1/base-models", headers={
            "X-Arkor-Client": "arkor/0.1.0", "Authorization": f"Bearer {ws.credentials.token}"
        }).json()
        assert "path" not in json.dumps(listed) and str(tmp_path) not in json.dumps(listed)


@pytest.mark.parametrize("value", ["no-equals", "=path", "name=", "name=/does/not/exist"])
def test_malformed_options_are_refused(value: str) -> None:
    with pytest.raises(BaseModelSpecError):
        parse_base_model_option(value)


def test_env_list_and_duplicates(tmp_path: Path) -> None:
    a, b = hf_dir(tmp_path, "a"), hf_dir(tmp_path, "b")
    specs = parse_base_models_env(f"x/a={a}, x/b={b},")
    assert [s.name for s in specs] == ["x/a", "x/b"]
    with pytest.raises(BaseModelSpecError, match="twice"):
        Settings(data_dir=tmp_path, base_models=(specs[0], specs[0]))
