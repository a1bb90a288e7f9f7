"""Training jobs through the HTTP API with the real runner: failures stay inside the job.

A killed runner fails its job and leaves the server serving; a server restart fails the job
it left running; a malformed dataset is refused before any job exists.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from arkor.cloud.supervisor import JobSupervisor
from arkor.server import create_app
from arkor.store import jobs
from arkor.store.db import Database
from arkor.store.tables import Job, Supervisor, utcnow
from arkor.training.demo import demo_dataset_path
from arkor.training.gpus import gpu_types_refusal, host_gpu_names
from tests.servers import LiveServer
from tests.workspace import Workspace, new_workspace

EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"


class Api:
    def __init__(self, url: str, ws: Workspace) -> None:
        self.url = url
        self.params = {"orgSlug": ws.scope.org_slug, "projectSlug": ws.scope.project_slug}
        self.org_id, self.project_id = ws.org_id, ws.project_id
        self.headers = {"X-Arkor-Client": "arkor/0.1.0",
                        "Authorization": f"Bearer {ws.credentials.token}"}

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        kwargs.setdefault("params", self.params)
        kwargs["headers"] = {**self.headers, **kwargs.get("headers", {})}
        return httpx.request(method, self.url + path, timeout=30, **kwargs)

    def upload(self, content: bytes, name: str = "data.jsonl") -> httpx.Response:
        return self.request("POST", "/v1/datasets", content=content,
                            headers={"content-type": "application/octet-stream"},
                            params={**self.params, "name": name})

    def create_job(self, dataset_id: str, **config) -> dict:
        body = {"name": "supervised", "config": {
            "model": EMBEDDED, "datasetSource": {"type": "upload", "uploadId": dataset_id},
            "batchSize": 2, "maxLength": 64, "loggingSteps": 1, **config}}
        response = self.request("POST", "/v1/jobs", json=body)
        assert response.status_code == 201, response.text
        return response.json()["job"]

    def job(self, job_id: str) -> dict:
        return self.request("GET", f"/v1/jobs/{job_id}").json()["job"]

    def wait_for(self, job_id: str, statuses: tuple[str, ...], timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} stayed {job['status']}")

    def first(self, job_id: str, kind: str) -> dict:
        """The job's first event of ``kind``, as soon as it is stored."""
        with httpx.stream("GET", f"{self.url}/v1/jobs/{job_id}/events/stream",
                          params=self.params, headers=self.headers, timeout=120) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and (frame := json.loads(line[6:]))["type"] == kind:
                    return frame
        raise AssertionError(f"the stream of job {job_id} ended without {kind}")

    def events(self, job_id: str) -> list[dict]:
        with httpx.stream("GET", f"{self.url}/v1/jobs/{job_id}/events/stream",
                          params=self.params, headers=self.headers, timeout=60) as response:
            frames = [json.loads(line[6:]) for line in response.iter_lines()
                      if line.startswith("data: ")]
        return frames


@pytest.fixture
def api(cloud, embedded_model_dir) -> Api:
    return Api(cloud.url, new_workspace(cloud.url))


def demo_upload(api: Api) -> str:
    response = api.upload(demo_dataset_path().read_bytes(), "triage.jsonl")
    assert response.status_code == 201, response.text
    dataset = response.json()["dataset"]
    assert dataset["numExamples"] == 100 and dataset["name"] == "triage.jsonl"
    return dataset["id"]


def runner_pid(cloud, job_id: str, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = cloud.app.state.supervisor.runner_pid(job_id)
        if pid is not None:
            return pid
        time.sleep(0.1)
    raise AssertionError("the runner never started")


def test_malformed_dataset_is_refused_with_line_numbers(api) -> None:
    good = json.dumps({"messages": [{"role": "user", "content": "hi"},
                                    {"role": "assistant", "content": "hello"}]})
    bad = "\n".join([good, "{not json", good, json.dumps({"messages": [{"role": "user",
                                                                        "content": "x"}]})])
    response = api.upload(bad.encode())
    assert response.status_code == 400
    error = response.json()["error"]
    assert "line 2" in error and "line 4" in error and "nothing was saved" in error
    assert api.request("GET", "/v1/datasets").json()["datasets"] == []
    assert "empty" in api.upload(b"").json()["error"]


def test_job_config_problems_are_400_before_any_job(api, tmp_path: Path) -> None:
    dataset_id = demo_upload(api)
    source = {"type": "upload", "uploadId": dataset_id}
    for config, needle in [
        ({"datasetSource": source}, "model"),
        ({"model": EMBEDDED, "datasetSource": source, "learningRate": -1}, "learningRate"),
        ({"model": "acme/unknown", "datasetSource": source}, "acme/unknown"),
        ({"model": EMBEDDED, "datasetSource": {"type": "upload", "uploadId": "nope"}}, "nope"),
    ]:
        response = api.request("POST", "/v1/jobs", json={"name": "x", "config": config})
        assert response.status_code in (400, 404), response.text
        assert needle in response.json()["error"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"messages": []}\n')
    response = api.request("POST", "/v1/jobs", json={"name": "x", "config": {
        "model": EMBEDDED, "datasetSource": {"type": "local", "path": str(broken)}}})
    assert response.status_code == 400 and "ARKOR_DATASET_ROOTS" in response.json()["error"]
    assert api.request("GET", "/v1/jobs").json()["jobs"] == []


def test_gpu_types_this_host_lacks_are_400_naming_both(api) -> None:
    asked = ["A100", "H100"]
    names = host_gpu_names()
    if gpu_types_refusal(asked, names) is None:
        pytest.skip(f"this host has one of {asked}: {names}")
    source = {"type": "upload", "uploadId": demo_upload(api)}
    response = api.request("POST", "/v1/jobs", json={"name": "x", "config": {
        "model": EMBEDDED, "datasetSource": source, "gpuTypes": asked}})
    assert response.status_code == 400
    has = f"this server's GPUs are {', '.join(names)}" if names else (
        "this server trains on CPU (torch sees no CUDA device)")
    assert response.json()["error"] == (
        f"config.gpuTypes: asks for A100 or H100, but {has}; send [] (or leave gpuTypes out) "
        "to train on what this server has")
    assert api.request("GET", "/v1/jobs").json()["jobs"] == []


def test_killed_runner_fails_the_job_and_the_server_keeps_serving(api, cloud) -> None:
    job = api.create_job(demo_upload(api), maxSteps=200, gpuTypes=[])  # []: any device
    assert job["config"]["gpuTypes"] == []
    pid = runner_pid(cloud, job["id"])
    assert api.first(job["id"], "training.log")["step"] == 1
    os.killpg(pid, signal.SIGKILL)
    failed = api.wait_for(job["id"], ("failed",), timeout=30)
    assert "killed" in failed["error"] and "SIGKILL" in failed["error"]
    frames = api.events(job["id"])
    assert frames[-2]["type"] == "training.failed" and frames[-1]["type"] == "end"
    # The runner said nothing more: the step is the last one stored for the job.
    logged = [f["step"] for f in frames if f["type"] == "training.log"]
    assert frames[-2]["step"] == logged[-1] >= 1
    assert api.request("GET", "/v1/jobs").status_code == 200
    assert httpx.get(cloud.url + "/healthz").json() == {"status": "ok"}


def test_cancel_stops_the_runner_within_seconds(api, cloud) -> None:
    job = api.create_job(demo_upload(api), maxSteps=200)
    pid = runner_pid(cloud, job["id"])
    started = time.monotonic()
    response = api.request("POST", f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 200 and response.json()["job"]["status"] == "cancelled"
    while time.monotonic() - started < 10:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the runner was still alive 10 s after cancel")
    time.sleep(0.5)
    assert api.job(job["id"])["status"] == "cancelled"
    again = api.request("POST", f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"] == "Job is already cancelled"
    frames = api.events(job["id"])
    assert [f["type"] for f in frames[-2:]] == ["training.cancelled", "end"]
    assert frames[-1] == {"type": "end", "jobId": job["id"]}


class Followed:
    """The supervisor's follower threads, seen from outside: each runner's pid, and when its
    follower ended (the runner's output closed: it exited)."""

    def __init__(self, supervisor, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pids: list[int] = []
        self.ended = threading.Event()
        follow = supervisor._follow

        def recorded(run, spec) -> None:  # type: ignore[no-untyped-def]
            self.pids.append(run.process.pid)
            try:
                follow(run, spec)
            finally:
                self.ended.set()

        monkeypatch.setattr(supervisor, "_follow", recorded)


def cancel_first(api: Api, answers: list[httpx.Response], job_id_of):  # type: ignore[no-untyped-def]
    """Wrap a function the dispatcher calls while it starts a job: on the dispatcher's thread,
    cancel the job first (once). ``job_id_of(args)`` names the job from the call."""
    def wrap(real):  # type: ignore[no-untyped-def]
        def cancelling(*args, **kwargs):  # type: ignore[no-untyped-def]
            if threading.current_thread().name == "arkor-jobs" and not answers:
                job_id = job_id_of(args)
                answers.append(api.request("POST", f"/v1/jobs/{job_id}/cancel"))
            return real(*args, **kwargs)
        return cancelling
    return wrap


def test_a_cancel_while_the_dispatcher_reads_the_job_wins(api, cloud, monkeypatch) -> None:
    """Regression: the dispatcher read the queued job, the cancel committed `cancelled`, then
    the dispatcher wrote `running` over it and started the runner; the cancel answered 200
    with `running` (CI, test_cancel_a_queued_or_running_job[postgres])."""
    import arkor.training.dataset as dataset_module

    def the_queued_job(_args) -> str:  # type: ignore[no-untyped-def]
        listed = api.request("GET", "/v1/jobs").json()["jobs"]
        return next(j["id"] for j in listed if j["status"] == "queued")

    followed = Followed(cloud.app.state.supervisor, monkeypatch)
    answers: list[httpx.Response] = []
    monkeypatch.setattr(dataset_module, "dataset_location", cancel_first(
        api, answers, the_queued_job)(dataset_module.dataset_location))
    job = api.create_job(demo_upload(api), maxSteps=200)
    deadline = time.monotonic() + 30
    while not answers and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the dispatcher's write, had it won, would be in by now
    assert answers and answers[0].status_code == 200, answers
    assert answers[0].json()["job"]["status"] == "cancelled"
    assert api.job(job["id"])["status"] == "cancelled" and followed.pids == []


def test_a_cancel_before_the_runner_is_registered_stops_it(api, cloud, monkeypatch) -> None:
    """Regression: a cancel between the job's `running` commit and its runner's registration
    found no process to stop, and the runner trained on under a cancelled job."""
    from arkor.cloud import supervisor as supervisor_module

    followed = Followed(cloud.app.state.supervisor, monkeypatch)
    answers: list[httpx.Response] = []
    monkeypatch.setattr(supervisor_module, "runner_command", cancel_first(
        api, answers, lambda args: Path(args[0]).parent.name)(supervisor_module.runner_command))
    job = api.create_job(demo_upload(api), maxSteps=200)
    assert followed.ended.wait(20), "the runner of a cancelled job was still running after 20 s"
    assert answers[0].status_code == 200 and answers[0].json()["job"]["status"] == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(followed.pids[0], 0)
    assert api.job(job["id"])["status"] == "cancelled"


def test_a_job_ended_by_another_server_stops_its_runner(api, cloud) -> None:
    """A cancel that reaches another server of the same database only changes the row: the
    server running the job stops its runner at the runner's next event."""
    job = api.create_job(demo_upload(api), maxSteps=200)
    pid = runner_pid(cloud, job["id"])
    api.first(job["id"], "training.log")
    elsewhere = Database(cloud.settings.db_url)
    with elsewhere.session() as session:
        jobs.set_status(session, session.get(Job, job["id"]), "cancelled")
    elsewhere.dispose()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and cloud.app.state.supervisor.runner_pid(job["id"]):
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert api.job(job["id"])["status"] == "cancelled"


def test_restart_fails_the_job_it_left_running(cloud, embedded_model_dir, tmp_path) -> None:
    from dataclasses import replace

    settings = replace(cloud.settings, data_dir=tmp_path / "restart", database_url=None)
    (settings.data_dir / "models").mkdir(parents=True)
    (settings.models_dir / embedded_model_dir.name).symlink_to(embedded_model_dir)
    with LiveServer(create_app(settings)) as url:
        api = Api(url, new_workspace(url))
        job = api.create_job(demo_upload(api), maxSteps=200)
        reached = api.first(job["id"], "training.log")["step"]
    # The first server is gone (its runner was stopped with it). A job it left "running"
    # with no one to finish it, as after a crash, is failed by the next one at its start.
    db = Database(settings.db_url)
    with db.session() as session:
        orphan = jobs.create_job(session, org_id=api.org_id, project_id=api.project_id,
                                 name="orphan", config=job["config"], status="running")
        jobs.add_event(session, orphan.id, {"type": "training.log", "jobId": orphan.id,
                                            "step": 7, "loss": 1.0})
        orphan_id = orphan.id
    db.dispose()
    with LiveServer(create_app(settings)) as url:
        api.url = url
        failed = api.wait_for(job["id"], ("failed",), timeout=10)
        assert "server stopped" in failed["error"]
        last = api.events(job["id"])[-2]
        assert last["type"] == "training.failed" and last["step"] >= reached
        assert "server stopped" in api.wait_for(orphan_id, ("failed",), timeout=10)["error"]
        last = api.events(orphan_id)[-2]
        assert (last["type"], last["step"]) == ("training.failed", 7)


class Watching(JobSupervisor):
    """Another server's supervisor that starts no jobs of its own: it only beats and looks
    for orphans, as every server does."""

    def _start_queued(self) -> None:
        return


def test_a_second_server_fails_only_jobs_whose_server_is_gone(api, cloud, backend) -> None:
    """Regression: every server failed every running job at its start, so a second server
    starting on the same PostgreSQL failed the jobs the first one was running."""
    if backend != "postgres":
        pytest.skip("one process per SQLite file: any other supervisor is gone")
    job = api.create_job(demo_upload(api), maxSteps=200)
    pid = runner_pid(cloud, job["id"])
    db = Database(cloud.settings.db_url)

    def running_job(name: str, supervisor_id: str | None, seen_ago: float | None) -> str:
        with db.session() as session:
            row = jobs.create_job(session, org_id=api.org_id, project_id=api.project_id,
                                  name=name, config=job["config"], status="running")
            row.supervisor_id = supervisor_id
            if supervisor_id is not None and seen_ago is not None:
                session.add(Supervisor(id=supervisor_id,
                                       seen_at=utcnow() - timedelta(seconds=seen_ago)))
            return row.id

    gone = running_job("gone", "0" * 32, seen_ago=120)
    unowned = running_job("from before supervisors were recorded", None, None)
    alive = running_job("alive", "1" * 32, seen_ago=0)
    second = Watching(db, cloud.settings)
    second.beat_seconds = 0.2
    second.start()
    try:
        for orphan in (gone, unowned):
            assert "server stopped" in api.wait_for(orphan, ("failed",), timeout=10)["error"]
        time.sleep(1.0)  # a few of the second server's beats
        assert api.job(alive)["status"] == "running"
        assert api.job(job["id"])["status"] == "running"
        os.kill(pid, 0)  # the first server's runner trains on
        with db.session() as session:  # the "alive" server stops beating
            session.get(Supervisor, "1" * 32).seen_at = utcnow() - timedelta(seconds=61)
        assert "server stopped" in api.wait_for(alive, ("failed",), timeout=10)["error"]
        assert api.job(job["id"])["status"] == "running"
    finally:
        second.stop()
        db.dispose()
    assert api.request("POST", f"/v1/jobs/{job['id']}/cancel").status_code == 200


def test_completed_job_leaves_adapters_that_change_outputs(api, cloud, backend,
                                                           embedded_model_dir) -> None:
    if backend != "sqlite":
        pytest.skip("training itself does not depend on the database; once is enough")
    job = api.create_job(demo_upload(api), maxSteps=6, saveSteps=3, batchSize=4,
                         learningRate=2e-3)
    done = api.wait_for(job["id"], ("completed", "failed"), timeout=180)
    assert done["status"] == "completed", done["error"]
    assert [c["step"] for c in done["checkpoints"]] == [3, 6] and done["hasFinalAdapter"]
    frames = api.events(job["id"])
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "training.started" and kinds[-2:] == ["training.completed", "end"]
    steps = [f["step"] for f in frames if f["type"] == "training.log" and f.get("loss")]
    assert steps == sorted(steps) and steps[-1] == 6

    artifacts = Path(cloud.settings.data_dir) / "artifacts" / job["id"]
    final, checkpoint = artifacts / "final", artifacts / "checkpoints" / "step-3"
    for adapter in (final, checkpoint):
        assert (adapter / "adapter_model.safetensors").is_file()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    base = AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32)
    messages = [{"role": "system", "content": "You triage customer support tickets. Reply with "
                 "exactly one line: LABEL: billing, LABEL: bug or LABEL: other."},
                {"role": "user", "content": "I was charged twice for my subscription."}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)

    def greedy(model) -> str:
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=12, do_sample=False)
        return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    base_answer = greedy(base)
    model = PeftModel.from_pretrained(base, final, adapter_name="final")
    model.load_adapter(checkpoint, adapter_name="ckpt")
    model.set_adapter("final")
    assert greedy(model) != base_answer
    model.set_adapter("ckpt")
    assert greedy(model) != base_answer


def test_jobs_wait_their_turn(api, cloud) -> None:
    dataset_id = demo_upload(api)
    first = api.create_job(dataset_id, maxSteps=200)
    api.wait_for(first["id"], ("running",))
    second = api.create_job(dataset_id, maxSteps=200)
    time.sleep(1.5)  # several dispatcher rounds: one job at a time by default
    assert api.job(second["id"])["status"] == "queued"
    api.request("POST", f"/v1/jobs/{first['id']}/cancel")
    api.wait_for(second["id"], ("running",), timeout=30)
    api.request("POST", f"/v1/jobs/{second['id']}/cancel")
    cancelled = api.wait_for(second["id"], ("cancelled",), timeout=30)
    assert cancelled["error"] is None
