"""Quotas per org, on a server with small ones: each refuses the request that would pass it
(403, or 429 for the job queue) naming the setting and its value, leaves nothing half-made, and
frees its room when something is deleted; ``GET /v1/me`` shows the limits and the usage; an
org's running-jobs quota holds its jobs back without holding others'; a job past its wall time
is stopped and fails with that reason."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from arkor.cloud.settings import Settings
from arkor.server import create_app
from arkor.training.demo import demo_dataset_path
from tests.conftest import CloudServer, link_cached_models
from tests.servers import LiveServer, database_url
from tests.workspace import Workspace, add_job, new_workspace

EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"
QUOTAS = {"quota_deployments": 2, "quota_keys_per_deployment": 2, "quota_datasets": 3,
          "quota_dataset_mb": 1, "quota_queued_jobs": 1, "quota_running_jobs": 1,
          "quota_job_steps": 300, "quota_job_epochs": 3, "quota_job_batch_size": 8,
          "quota_job_wall_s": 4}


@pytest.fixture(scope="module")
def quota_cloud(backend: str, tmp_path_factory: pytest.TempPathFactory,
                request: pytest.FixtureRequest) -> Iterator[CloudServer]:
    data_dir = tmp_path_factory.mktemp(f"quotas-{backend}")
    link_cached_models(data_dir, request.config)
    with database_url(backend, data_dir) as url:
        settings = Settings(data_dir=data_dir, database_url=url, signup_per_hour=100_000,
                            **QUOTAS)
        app = create_app(settings)
        with LiveServer(app) as base:
            yield CloudServer(url=base, settings=settings, app=app)


class Api:
    def __init__(self, url: str, ws: Workspace) -> None:
        self.url, self.ws = url, ws
        self.params = {"orgSlug": ws.scope.org_slug, "projectSlug": ws.scope.project_slug}
        self.headers = {"X-Arkor-Client": "arkor/0.1.0",
                        "Authorization": f"Bearer {ws.credentials.token}"}

    def __call__(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        params = {**self.params, **kwargs.pop("params", {})}  # type: ignore[dict-item]
        headers = {**self.headers, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return httpx.request(method, self.url + path, params=params, headers=headers,
                             timeout=60, **kwargs)  # type: ignore[arg-type]

    def deploy(self, slug: str) -> httpx.Response:
        return self("POST", "/v1/endpoints", json={
            "slug": slug, "target": {"kind": "base_model", "baseModel": EMBEDDED}})

    def upload(self, content: bytes) -> httpx.Response:
        return self("POST", "/v1/datasets", content=content,
                    headers={"content-type": "application/octet-stream"})

    def job(self, dataset_id: str, **config: object) -> httpx.Response:
        return self("POST", "/v1/jobs", json={"name": "q", "config": {
            "model": EMBEDDED, "datasetSource": {"type": "upload", "uploadId": dataset_id},
            **{k: v for k, v in {"batchSize": 2, "maxLength": 64, "maxSteps": 200,
                                 **config}.items() if v is not None}}})

    def me_org(self) -> dict:
        me = self("GET", "/v1/me").json()
        return next(o for o in me["orgs"] if o["slug"] == self.ws.scope.org_slug)


@pytest.fixture
def api(quota_cloud: CloudServer) -> Api:
    return Api(quota_cloud.url, new_workspace(quota_cloud.url))


def refusal(response: httpx.Response, status: int, setting: str) -> str:
    assert response.status_code == status, response.text
    message = str(response.json()["error"])
    assert f"quota {setting}=" in message, message
    return message


def jsonl(size: int) -> bytes:
    row = json.dumps({"messages": [{"role": "user", "content": "Where is my order?"},
                                   {"role": "assistant", "content": "shipping"}]}).encode()
    return b"\n".join([row] * (size // (len(row) + 1))) + b"\n"


def dataset_files(cloud: CloudServer, api: Api) -> list[Path]:
    folder = Path(cloud.settings.data_dir) / "datasets" / api.ws.project_id  # type: ignore[attr-defined]
    return sorted(folder.glob("*")) if folder.is_dir() else []


def test_me_shows_the_limits_and_the_org_s_usage(api: Api) -> None:
    me = api("GET", "/v1/me").json()
    assert me["quotas"] == {
        "deployments": 2, "keysPerDeployment": 2, "datasets": 3, "datasetBytes": 1024 * 1024,
        "queuedJobs": 1, "runningJobs": 1, "jobSteps": 300, "jobEpochs": 3,
        "jobBatchSize": 8, "jobWallSeconds": 4}
    assert api.me_org()["usage"] == {"deployments": 0, "datasets": 0, "datasetBytes": 0,
                                     "queuedJobs": 0, "runningJobs": 0}
    assert api.deploy("me-one").status_code == 201
    uploaded = api.upload(jsonl(2000))
    assert uploaded.status_code == 201
    usage = api.me_org()["usage"]
    assert usage["deployments"] == 1 and usage["datasets"] == 1
    assert usage["datasetBytes"] == uploaded.json()["dataset"]["sizeBytes"] > 0
    me = api.ws.client.get_me()  # the SDK's
    assert me.quotas is not None and me.quotas.job_wall_seconds == 4
    assert me.orgs[0].usage is not None and me.orgs[0].usage.deployments == 1


def test_deployments_past_the_quota_are_403_and_a_delete_frees_a_place(api: Api) -> None:
    created = [api.deploy(f"dq-{api.ws.org_id[:8]}-{i}") for i in range(2)]
    assert [r.status_code for r in created] == [201, 201]
    message = refusal(api.deploy(f"dq-{api.ws.org_id[:8]}-x"), 403, "ARKOR_QUOTA_DEPLOYMENTS")
    assert "2 deployments" in message
    assert len(api("GET", "/v1/endpoints").json()["deployments"]) == 2  # nothing half-made
    assert api("DELETE", f"/v1/endpoints/{created[0].json()['deployment']['id']}") \
        .status_code == 204
    assert api.deploy(f"dq-{api.ws.org_id[:8]}-y").status_code == 201


def test_another_org_has_its_own_count(api: Api, quota_cloud: CloudServer) -> None:
    for i in range(2):
        assert api.deploy(f"own-{api.ws.org_id[:8]}-{i}").status_code == 201
    other = Api(quota_cloud.url, new_workspace(quota_cloud.url))
    assert other.deploy(f"own-{other.ws.org_id[:8]}").status_code == 201


def test_requests_at_once_cannot_both_take_the_last_place(api: Api) -> None:
    answers: list[int] = []

    def deploy(i: int) -> None:
        answers.append(api.deploy(f"race-{api.ws.org_id[:8]}-{i}").status_code)

    threads = [threading.Thread(target=deploy, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [201, 201, 403, 403, 403, 403]
    assert len(api("GET", "/v1/endpoints").json()["deployments"]) == 2


def test_keys_per_deployment_count_only_unrevoked_keys(api: Api) -> None:
    deployment = api.deploy(f"keys-{api.ws.org_id[:8]}").json()["deployment"]["id"]
    path = f"/v1/endpoints/{deployment}/keys"
    keys = [api("POST", path, json={"label": f"k{i}"}) for i in range(2)]
    assert [k.status_code for k in keys] == [201, 201]
    refused = api("POST", path, json={"label": "k3"})
    assert "plaintext" not in refused.text
    refusal(refused, 403, "ARKOR_QUOTA_KEYS_PER_DEPLOYMENT")
    assert len(api("GET", path).json()["keys"]) == 2
    assert api("DELETE", f"{path}/{keys[0].json()['key']['id']}").status_code == 204
    assert api("POST", path, json={"label": "k4"}).status_code == 201


def test_dataset_count_quota_and_delete(api: Api, quota_cloud: CloudServer) -> None:
    ids = []
    for _ in range(3):
        response = api.upload(jsonl(1000))
        assert response.status_code == 201, response.text
        ids.append(response.json()["dataset"]["id"])
    refusal(api.upload(jsonl(1000)), 403, "ARKOR_QUOTA_DATASETS")
    assert len(dataset_files(quota_cloud, api)) == 3
    api.ws.client.delete_dataset(ids[0], api.ws.scope)  # the SDK's
    assert len(dataset_files(quota_cloud, api)) == 2
    assert api("DELETE", f"/v1/datasets/{ids[0]}").status_code == 404
    assert api.upload(jsonl(1000)).status_code == 201


def test_an_upload_past_the_bytes_quota_is_403_and_nothing_of_it_is_kept(
        api: Api, quota_cloud: CloudServer) -> None:
    assert api.upload(jsonl(600_000)).status_code == 201
    message = refusal(api.upload(jsonl(600_000)), 403, "ARKOR_QUOTA_DATASET_MB")
    assert "Nothing of the upload was kept" in message
    assert len(dataset_files(quota_cloud, api)) == 1
    assert len(api("GET", "/v1/datasets").json()["datasets"]) == 1
    assert api.upload(jsonl(300_000)).status_code == 201


def test_job_bounds_are_403_before_any_job(api: Api) -> None:
    dataset = api.upload(demo_dataset_path().read_bytes()).json()["dataset"]["id"]  # 100 rows
    refusal(api.job(dataset, maxSteps=301), 403, "ARKOR_QUOTA_JOB_STEPS")
    refusal(api.job(dataset, batchSize=9), 403, "ARKOR_QUOTA_JOB_BATCH_SIZE")
    message = refusal(api.job(dataset, maxSteps=None, numTrainEpochs=3.5), 403,
                      "ARKOR_QUOTA_JOB_EPOCHS")
    assert "numTrainEpochs is 3.5" in message
    # No maxSteps: the steps are counted from the epochs, the rows and the batch size.
    rows = api.upload(jsonl(60_000)).json()["dataset"]
    steps = api.job(rows["id"], maxSteps=None, batchSize=1, numTrainEpochs=1)
    message = refusal(steps, 403, "ARKOR_QUOTA_JOB_STEPS")
    assert f"1 epochs of {rows['numExamples']} rows at batch size 1 are " \
           f"{rows['numExamples']} steps" in message
    assert api("GET", "/v1/jobs").json()["jobs"] == []


def test_a_dataset_a_waiting_job_reads_cannot_be_deleted(api: Api, quota_cloud: CloudServer
                                                         ) -> None:
    add_job(quota_cloud, api.ws, status="running", name="elsewhere")  # holds the org's one slot
    dataset = api.upload(demo_dataset_path().read_bytes()).json()["dataset"]["id"]
    job = api.job(dataset)
    assert job.status_code == 201, job.text
    conflict = api("DELETE", f"/v1/datasets/{dataset}")
    assert conflict.status_code == 409 and job.json()["job"]["id"] in conflict.json()["error"]
    assert api("POST", f"/v1/jobs/{job.json()['job']['id']}/cancel").status_code == 200
    assert api("DELETE", f"/v1/datasets/{dataset}").status_code == 204


def test_running_and_queued_quotas_hold_one_org_back_not_the_others(
        api: Api, quota_cloud: CloudServer, embedded_model_dir: Path) -> None:
    add_job(quota_cloud, api.ws, status="running", name="elsewhere")  # the org's one slot
    dataset = api.upload(demo_dataset_path().read_bytes()).json()["dataset"]["id"]
    waiting = api.job(dataset)
    assert waiting.status_code == 201, waiting.text
    message = refusal(api.job(dataset), 429, "ARKOR_QUOTA_QUEUED_JOBS")
    assert "1 jobs waiting" in message

    other = Api(quota_cloud.url, new_workspace(quota_cloud.url))
    other_dataset = other.upload(demo_dataset_path().read_bytes()).json()["dataset"]["id"]
    started = other.job(other_dataset).json()["job"]["id"]
    job = wait_for(other, started, ("running", "failed"))
    assert job["status"] == "running", job  # another org's job starts at once
    assert api("GET", f"/v1/jobs/{waiting.json()['job']['id']}").json()["job"]["status"] \
        == "queued"
    assert api.me_org()["usage"]["queuedJobs"] == 1

    # ...and runs until its wall time: stopped, failed with that reason.
    failed = wait_for(other, started, ("failed", "completed", "cancelled"), timeout=60)
    assert failed["status"] == "failed"
    assert "wall time of 4 s" in failed["error"] and "ARKOR_QUOTA_JOB_WALL_S=4" in failed["error"]
    stream = other("GET", f"/v1/jobs/{started}/events/stream").text
    frames = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: ")]
    logged = [f["step"] for f in frames if f["type"] == "training.log"]
    assert frames[-2]["type"] == "training.failed"  # with the step the runner reached
    assert frames[-2]["step"] >= logged[-1] if logged else frames[-2]["step"] in (None, 0)
    assert quota_cloud.app.state.supervisor.runner_pid(started) is None  # type: ignore[attr-defined]
    api("POST", f"/v1/jobs/{waiting.json()['job']['id']}/cancel")


def wait_for(api: Api, job_id: str, statuses: tuple[str, ...], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api("GET", f"/v1/jobs/{job_id}").json()["job"]
        if job["status"] in statuses:
            return dict(job)
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} stayed {job['status']}")
