"""What the server keeps is private to its account (directories 0700, files 0600), and the
training runner starts with an allow-listed environment, not the server's."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import httpx
import pytest

from arkor._version import SDK_VERSION
from arkor.training.spec import runner_environment
from tests.sdk.training_support import EMBEDDED, TINY, share_embedded_model, write_chat_dataset
from tests.workspace import new_workspace

SECRET = "hunter2-not-for-the-runner"


class Api:
    def __init__(self, url: str) -> None:
        ws = new_workspace(url)
        self.url = url
        self.params = {"orgSlug": ws.scope.org_slug, "projectSlug": ws.scope.project_slug}
        self.headers = {"X-Arkor-Client": f"arkor/{SDK_VERSION}",
                        "Authorization": f"Bearer {ws.credentials.token}"}

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, params=self.params, headers=headers,
                             timeout=60, **kwargs)

    def train(self, dataset: Path, **config) -> str:
        upload = self.request("POST", "/v1/datasets", content=dataset.read_bytes(),
                              headers={"content-type": "application/octet-stream"})
        assert upload.status_code == 201, upload.text
        source = {"type": "upload", "uploadId": upload.json()["dataset"]["id"]}
        job = self.request("POST", "/v1/jobs", json={"name": "private", "config": {
            "model": EMBEDDED, "datasetSource": source, **config}})
        assert job.status_code == 201, job.text
        return str(job.json()["job"]["id"])

    def wait_for(self, job_id: str, statuses: tuple[str, ...], timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.request("GET", f"/v1/jobs/{job_id}").json()["job"]
            if job["status"] in statuses:
                return dict(job)
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} stayed {job['status']}")


@pytest.fixture
def api(cloud, embedded_model_dir) -> Api:
    share_embedded_model(cloud, embedded_model_dir)
    return Api(cloud.url)


def test_runner_environment_keeps_only_what_running_python_and_torch_needs() -> None:
    server = {"PATH": "/usr/bin", "HOME": "/home/arkor", "LANG": "C.UTF-8", "LC_ALL": "C",
              "TMPDIR": "/tmp", "VIRTUAL_ENV": "/venv", "OMP_NUM_THREADS": "2",
              "CUDA_VISIBLE_DEVICES": "0", "HF_HUB_OFFLINE": "1",
              "ARKOR_DATABASE_URL": f"postgresql://arkor:{SECRET}@db/arkor",
              "ARKOR_DATA_DIR": "/srv/arkor", "HF_TOKEN": SECRET, "SOME_SECRET": SECRET,
              "AWS_SECRET_ACCESS_KEY": SECRET, "PGPASSWORD": SECRET}
    assert runner_environment(server) == {
        "PATH": "/usr/bin", "HOME": "/home/arkor", "LANG": "C.UTF-8", "LC_ALL": "C",
        "TMPDIR": "/tmp", "VIRTUAL_ENV": "/venv", "OMP_NUM_THREADS": "2",
        "CUDA_VISIBLE_DEVICES": "0", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def test_the_runner_does_not_receive_the_servers_secrets(api, cloud, monkeypatch,
                                                         tmp_path) -> None:
    monkeypatch.setenv("ARKOR_DATABASE_URL", f"postgresql://arkor:{SECRET}@db/arkor")
    monkeypatch.setenv("SOME_SECRET", SECRET)
    job_id = api.train(write_chat_dataset(tmp_path / "chat.jsonl"), maxSteps=200, batchSize=2,
                       maxLength=64)
    deadline = time.monotonic() + 60
    while (pid := cloud.app.state.supervisor.runner_pid(job_id)) is None:
        assert time.monotonic() < deadline, "the runner never started"
        time.sleep(0.05)
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert api.request("POST", f"/v1/jobs/{job_id}/cancel").status_code == 200
    names = {entry.split(b"=", 1)[0].decode() for entry in environ.split(b"\0") if entry}
    assert SECRET.encode() not in environ
    assert "PATH" in names and "PYTHONUNBUFFERED" in names
    assert not {"ARKOR_DATABASE_URL", "SOME_SECRET"} & names


def test_data_directory_is_private_after_a_training_run(api, cloud, backend, tmp_path) -> None:
    if backend != "sqlite":
        pytest.skip("the SQLite file is the database's only file here; once is enough")
    job_id = api.train(write_chat_dataset(tmp_path / "chat.jsonl"), **TINY)
    assert api.wait_for(job_id, ("completed", "failed"))["status"] == "completed"
    data_dir = Path(cloud.settings.data_dir)
    artifacts = data_dir / "artifacts" / job_id
    expected = {artifacts / "spec.json", artifacts / "runner.log",
                artifacts / "final" / "adapter_model.safetensors",
                artifacts / "checkpoints" / "step-2" / "adapter_config.json"}
    if cloud.settings.database_url.startswith("sqlite"):
        expected.add(data_dir / "arkor.sqlite3")
    seen: dict[Path, int] = {data_dir: stat.S_IMODE(data_dir.stat().st_mode)}
    for folder, dirs, files in os.walk(data_dir):
        if Path(folder) == data_dir / "models":
            continue  # a link to the model converted once per checkout (tests/conftest.py)
        for name in [*dirs, *files]:
            path = Path(folder) / name
            seen[path] = stat.S_IMODE(path.lstat().st_mode)
    assert expected <= set(seen)
    assert any(p.parent.parent.name == "datasets" and p.suffix == ".jsonl" for p in seen)
    loose = {str(p): oct(mode) for p, mode in seen.items()
             if mode != (0o700 if p.is_dir() else 0o600)}
    assert loose == {}
