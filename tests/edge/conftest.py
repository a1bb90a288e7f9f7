"""A real control plane + edge + local engine, with real adapters to serve.

Two adapters (support-ticket labels, sentence languages) are trained once per checkout by
``tests/engine/tiny_adapters.py`` and imported through the API as completed jobs; a third job
is trained through the API for a few steps so a checkpoint can be served.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from arkor.cloud.settings import Settings
from arkor.server import create_app
from tests.conftest import link_cached_models
from tests.engine.tiny_adapters import label_examples, lang_examples, train_adapter
from tests.servers import LiveServer
from tests.workspace import Workspace, new_workspace

EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass
class EdgeWorld:
    url: str
    app: object
    settings: Settings
    ws: Workspace
    label_job: str
    lang_job: str
    trained_job: str
    label_dir: Path
    lang_dir: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Arkor-Client": "arkor/0.1.0",
                "Authorization": f"Bearer {self.ws.credentials.token}"}

    @property
    def params(self) -> dict[str, str]:
        return {"orgSlug": self.ws.scope.org_slug, "projectSlug": self.ws.scope.project_slug}

    def checkpoint_dir(self, step: int) -> Path:
        return (self.settings.artifacts_dir / self.trained_job / "checkpoints" / f"step-{step}")


@pytest.fixture(scope="session")
def tiny_adapters(request: pytest.FixtureRequest, embedded_model_dir: Path) -> tuple[Path, Path]:
    cache = Path(request.config.cache.mkdir("arkor-engine-adapters-v1"))
    return (train_adapter(embedded_model_dir, label_examples(), cache / "label"),
            train_adapter(embedded_model_dir, lang_examples(), cache / "lang"))


def import_adapter(url: str, ws: Workspace, adapter_dir: Path, name: str) -> str:
    files = [("files", (f, (adapter_dir / f).read_bytes()))
             for f in ("adapter_config.json", "adapter_model.safetensors")]
    response = httpx.post(f"{url}/v1/jobs/import", params={
        "orgSlug": ws.scope.org_slug, "projectSlug": ws.scope.project_slug},
        headers={"X-Arkor-Client": "arkor/0.1.0",
                 "Authorization": f"Bearer {ws.credentials.token}"},
        files=files, data={"name": name}, timeout=60)
    assert response.status_code == 201, response.text
    return response.json()["job"]["id"]


def train_small_job(url: str, ws: Workspace) -> str:
    from arkor.training.demo import demo_dataset_path

    headers = {"X-Arkor-Client": "arkor/0.1.0",
               "Authorization": f"Bearer {ws.credentials.token}"}
    params = {"orgSlug": ws.scope.org_slug, "projectSlug": ws.scope.project_slug}
    dataset = httpx.post(f"{url}/v1/datasets", params={**params, "name": "triage.jsonl"},
                         headers={**headers, "content-type": "application/octet-stream"},
                         content=demo_dataset_path().read_bytes(), timeout=60).json()["dataset"]
    job = httpx.post(f"{url}/v1/jobs", params=params, headers=headers, timeout=60, json={
        "name": "small", "config": {
            "model": EMBEDDED, "datasetSource": {"type": "upload", "uploadId": dataset["id"]},
            "maxSteps": 2, "saveSteps": 1, "batchSize": 4, "maxLength": 64,
            "learningRate": 3e-3}}).json()["job"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        state = httpx.get(f"{url}/v1/jobs/{job['id']}", params=params, headers=headers).json()
        if state["job"]["status"] in ("completed", "failed", "cancelled"):
            assert state["job"]["status"] == "completed", state["job"]["error"]
            return job["id"]
        time.sleep(0.5)
    raise AssertionError("the small training job did not finish")


@pytest.fixture(scope="session")
def edge_world(tmp_path_factory, request, tiny_adapters) -> Iterator[EdgeWorld]:
    data_dir = tmp_path_factory.mktemp("edge")
    link_cached_models(data_dir, request.config)
    settings = Settings(data_dir=data_dir)
    app = create_app(settings)
    with LiveServer(app) as url:
        ws = new_workspace(url)
        label_dir, lang_dir = tiny_adapters
        yield EdgeWorld(
            url=url, app=app, settings=settings, ws=ws,
            label_job=import_adapter(url, ws, label_dir, "labels"),
            lang_job=import_adapter(url, ws, lang_dir, "languages"),
            trained_job=train_small_job(url, ws),
            label_dir=label_dir, lang_dir=lang_dir,
        )
