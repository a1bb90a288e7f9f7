"""Reading adapters from disk: one whose weights hold NaN or infinity is refused with
``AdapterLoadError`` before it can reach a batch, however it got there (imports refuse it
too, see tests/cloud/test_job_import.py); other callers of the same server are unaffected."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load_file, save_file

from arkor.cloud.settings import Settings
from arkor.engine.base import AdapterLoadError, AdapterRef
from arkor.engine.local.adapters import read_adapter
from arkor.server import create_app
from arkor.store import jobs
from tests.conftest import CloudServer, link_cached_models
from tests.servers import LiveServer
from tests.training.test_adapters import lora_tensors, write_adapter
from tests.workspace import Workspace, add_job, new_workspace

WEIGHTS = "adapter_model.safetensors"
POISONED = "base_model.model.model.layers.3.self_attn.v_proj.lora_B.weight"
EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"


def write_poisoned(path: Path, value: float) -> Path:
    adapter = write_adapter(path, lora_tensors())
    tensors = load_file(str(adapter / WEIGHTS))
    tensors[POISONED][7, 2] = value
    save_file(tensors, str(adapter / WEIGHTS))
    return adapter


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_are_an_adapter_load_error(tmp_path, value) -> None:
    ref = AdapterRef(key="job:x:final", path=write_poisoned(tmp_path, value))
    with pytest.raises(AdapterLoadError, match=f"tensor {POISONED}.* NaN or infinite"):
        read_adapter(ref, torch.device("cpu"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, request, embedded_model_dir) -> Iterator[CloudServer]:
    data_dir = tmp_path_factory.mktemp("poisoned")
    link_cached_models(data_dir, request.config)
    settings = Settings(data_dir=data_dir)
    app = create_app(settings)
    with LiveServer(app) as url:
        yield CloudServer(url=url, settings=settings, app=app)


def final_dir(server: CloudServer, ws: Workspace, job_id: str) -> Path:
    with server.app.state.db.session() as session:  # type: ignore[attr-defined]
        return Path(jobs.get_job(session, ws.project_id, job_id).artifacts_dir) / "final"


def test_a_poisoned_adapter_on_disk_fails_alone(server) -> None:
    ws = new_workspace(server.url)
    healthy, poisoned = add_job(server, ws, name="healthy"), add_job(server, ws, name="nan")
    write_adapter(final_dir(server, ws, healthy), lora_tensors())
    write_poisoned(final_dir(server, ws, poisoned), math.nan)

    def chat(target: dict) -> httpx.Response:
        return httpx.post(f"{server.url}/v1/inference/chat", timeout=120,
                          params={"orgSlug": ws.scope.org_slug,
                                  "projectSlug": ws.scope.project_slug},
                          headers={"X-Arkor-Client": "arkor/0.1.0",
                                   "Authorization": f"Bearer {ws.credentials.token}"},
                          json={**target, "messages": [{"role": "user", "content": "Hi"}],
                                "maxTokens": 3, "temperature": 0})

    refused = chat({"adapter": {"kind": "final", "jobId": poisoned}})
    assert refused.status_code == 503, refused.text
    assert f"tensor {POISONED} holds NaN or infinite values" in refused.json()["error"]
    for target in ({"adapter": {"kind": "final", "jobId": healthy}}, {"baseModel": EMBEDDED}):
        answer = chat(target)
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["completion_tokens"] > 0
