"""Training from the Studio: datasets, ``/api/train``, the job list, events and cancel,
then chatting with the adapter the run produced."""

from __future__ import annotations

import json

import pytest

from arkor.sdk import read_credentials
from tests.studio.conftest import sign_in_workspace
from tests.workspace import add_job

GOOD_LINE = json.dumps({"messages": [{"role": "user", "content": "hi"},
                                     {"role": "assistant", "content": "hello"}]})


def read_events(studio, job_id: str, **headers: str) -> list[tuple[str, str, dict]]:
    """``(id, event, data)`` for every frame until the stream's ``end``."""
    frames, current = [], {}
    with studio.http.stream("GET", f"/api/jobs/{job_id}/events",
                            params={"studioToken": studio.token}, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache, no-transform"
        for line in response.iter_lines():
            if not line:
                if current.get("event"):
                    frames.append((current.get("id", ""), current["event"],
                                   json.loads(current.get("data") or "{}")))
                current = {}
                continue
            key, _, value = line.partition(":")
            current[key] = value.strip()
    return frames


def test_jobs_without_state_are_empty_without_a_call(studio) -> None:
    assert studio.get("/api/jobs").json() == {"jobs": []}
    assert read_credentials() is None and not studio.state_file.exists()
    assert studio.post("/api/jobs/abc/cancel").status_code == 400


def test_jobs_list_is_passed_through(studio, cloud) -> None:
    ws = sign_in_workspace(cloud.url, studio.cwd)
    job_id = add_job(cloud, ws, name="listed-run")
    response = studio.get("/api/jobs")
    assert response.status_code == 200
    assert [(j["id"], j["name"]) for j in response.json()["jobs"]] == [(job_id, "listed-run")]


def test_cancelling_an_ended_job_passes_the_409_through(studio, cloud) -> None:
    ws = sign_in_workspace(cloud.url, studio.cwd)
    job_id = add_job(cloud, ws)
    response = studio.post(f"/api/jobs/{job_id}/cancel")
    assert (response.status_code, response.json()) == (409, {"error": "Job is already completed"})
    unknown = studio.post("/api/jobs/00000000-0000-4000-8000-000000000000/cancel")
    assert unknown.status_code == 404


@pytest.mark.parametrize(("body", "message"), [
    ("nope", "Invalid JSON body"),
    ("[]", "Training body must be a JSON object"),
    ("{}", 'Pass exactly one of "dataset": "demo"'),
    ('{"dataset": "demo", "datasetUploadId": "x"}', 'Pass exactly one of "dataset": "demo"'),
    ('{"dataset": "demo", "settings": {"maxSteps": "3"}}', "settings.maxSteps must be a number"),
    ('{"dataset": "demo", "settings": {"rmrf": 1}}', "Unknown training setting 'rmrf'"),
    ('{"dataset": "demo", "name": ""}', "name must be a non-empty string"),
])
def test_train_body_is_checked_first(studio, body: str, message: str) -> None:
    response = studio.post("/api/train", content=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)
    assert read_credentials() is None and not studio.state_file.exists()


def test_dataset_upload_reports_lines_and_bootstraps(studio) -> None:
    bad = studio.post("/api/datasets", params={"name": "bad.jsonl"},
                      content=f"{GOOD_LINE}\nnot json\n".encode())
    assert bad.status_code == 400
    assert "line 2" in bad.json()["error"]
    assert studio.state_file.exists()
    good = studio.post("/api/datasets", params={"name": "good.jsonl"},
                       content=(GOOD_LINE + "\n") * 3)
    assert good.status_code == 201
    assert good.json()["dataset"]["name"] == "good.jsonl"
    assert good.json()["dataset"]["numExamples"] == 3
    empty = studio.post("/api/datasets", content=b"  \n")
    assert empty.status_code == 400 and "empty" in empty.json()["error"]


def test_train_an_uploaded_dataset_with_an_unknown_id_is_404(studio) -> None:
    response = studio.post("/api/train", json={
        "datasetUploadId": "00000000-0000-4000-8000-000000000000"})
    assert response.status_code == 404


def test_demo_run_streams_loss_then_chats_with_the_adapter(studio, backend) -> None:
    if backend != "sqlite":
        pytest.skip("training and chat do not depend on the database; once is enough")
    started = studio.post("/api/train", json={
        "dataset": "demo", "settings": {"maxSteps": 2, "evalSteps": 1, "saveSteps": 1}})
    assert started.status_code == 200, started.text
    job = started.json()["job"]
    assert job["status"] in ("queued", "running")
    assert job["name"] == "support-triage"
    assert job["config"]["maxSteps"] == 2
    assert job["config"]["datasetSource"]["type"] == "upload"
    assert job["config"]["evalDatasetSource"]["type"] == "upload"
    assert studio.state_file.exists()

    frames = read_events(studio, job["id"])
    # Keep-alive pings come while nothing happens for 15 s (a first run converts the model).
    kinds = [event for _, event, _ in frames if event != "ping"]
    assert kinds[0] == "training.started" and kinds[-1] == "end"
    assert "training.completed" in kinds
    logs = [data for _, event, data in frames if event == "training.log"]
    assert [log["step"] for log in logs if log["loss"] is not None] == [1, 2]
    assert any(log["evalLoss"] is not None for log in logs)

    after = read_events(studio, job["id"], **{"Last-Event-ID": frames[-3][0]})
    assert [event for _, event, _ in after] == [event for _, event, _ in frames[-2:]]

    listed = studio.get("/api/jobs").json()["jobs"]
    assert listed[0]["id"] == job["id"] and listed[0]["status"] == "completed"

    reply = studio.post("/api/inference/chat", json={
        "adapter": {"kind": "final", "jobId": job["id"]}, "stream": True, "maxTokens": 4,
        "messages": [{"id": 1, "role": "user", "content": "My card was charged twice."}]})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    data = [line[6:] for line in reply.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content") or ""
                   for d in data[:-1] if json.loads(d)["choices"])
    assert text.strip()


def test_cancel_a_queued_or_running_job(studio) -> None:
    job = studio.post("/api/train", json={"dataset": "demo",
                                          "settings": {"maxSteps": 50}}).json()["job"]
    response = studio.post(f"/api/jobs/{job['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["job"]["status"] == "cancelled"


def test_inference_errors_are_passed_through(studio) -> None:
    missing = studio.post("/api/inference/chat", json={
        "adapter": {"kind": "final", "jobId": "00000000-0000-4000-8000-000000000000"},
        "messages": [{"role": "user", "content": "hi"}]})
    assert missing.status_code == 404
    assert "error" in missing.json()
    assert studio.state_file.exists()  # inference is a write path: it bootstraps


def test_inference_streams_from_the_base_model(studio) -> None:
    reply = studio.post("/api/inference/chat", json={
        "baseModel": "HuggingFaceTB/SmolLM2-135M-Instruct", "stream": False, "maxTokens": 3,
        "messages": [{"role": "user", "content": "Say hi"}]})
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["role"] == "assistant"
