"""Datasets, jobs, the event stream, the Trainer and adapter import against a real server
that really trains. One small job per module is shared by most tests."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from arkor import (
    AsyncCloudApiClient,
    BadRequestError,
    CheckpointInfo,
    CloudApiClient,
    CompletedInfo,
    ConflictError,
    FailedInfo,
    JobEvent,
    LogInfo,
    NotFoundError,
    StartedInfo,
    TrainingResult,
    create_async_trainer,
    create_trainer,
    read_credentials,
    read_state,
)
from tests.sdk.training_support import (
    EMBEDDED,
    TINY,
    break_target_modules,
    copy_final_adapter,
    share_embedded_model,
    write_bad_dataset,
    write_chat_dataset,
)
from tests.workspace import Workspace, new_workspace


@dataclass
class TrainedJob:
    ws: Workspace
    job_id: str
    events: list[JobEvent]
    calls: list[tuple[str, Any]]
    result: TrainingResult
    dataset_id: str
    streamed: list[JobEvent] = field(default_factory=list)


@pytest.fixture(scope="module")
def backend() -> str:
    """SQLite only: the SDK follows what the API answers, the same on either database; the job
    and event routes run on PostgreSQL too in tests/cloud (the supervisor, the SSE route) and
    tests/store (event order)."""
    return "sqlite"


@pytest.fixture(scope="module")
def trained(cloud, embedded_model_dir, tmp_path_factory) -> TrainedJob:
    """A Trainer runs a 4-step job with callbacks while a second reader follows the same
    job's stream live."""
    share_embedded_model(cloud, embedded_model_dir)
    ws = new_workspace(cloud.url, "jobs")
    dataset = write_chat_dataset(tmp_path_factory.mktemp("data") / "tiny.jsonl")
    calls: list[tuple[str, Any]] = []
    trainer = create_trainer(
        name="tiny", dataset=dataset, max_steps=TINY["maxSteps"], batch_size=TINY["batchSize"],
        max_length=TINY["maxLength"], save_steps=TINY["saveSteps"],
        logging_steps=TINY["loggingSteps"], seed=7, client=ws.client, scope=ws.scope,
        on_started=lambda info: calls.append(("started", info)),
        on_log=lambda info: calls.append(("log", info)),
        on_checkpoint=lambda info: calls.append(("checkpoint", info)),
        on_completed=lambda info: calls.append(("completed", info)),
        on_failed=lambda info: calls.append(("failed", info)),
    )
    job_id = trainer.start()
    assert trainer.start() == job_id  # idempotent
    live: list[JobEvent] = []
    reader = threading.Thread(target=lambda: live.extend(ws.client.stream_events(job_id,
                                                                                ws.scope)))
    reader.start()
    result = trainer.wait()
    reader.join(timeout=60)
    assert not reader.is_alive()
    [dataset_row] = ws.client.list_datasets(ws.scope)
    return TrainedJob(ws=ws, job_id=job_id, events=live, calls=calls, result=result,
                      dataset_id=dataset_row.id)


def test_events_arrive_in_order(trained: TrainedJob) -> None:
    types = [e.type for e in trained.events]
    assert types[0] == "training.started"
    assert types[-2:] == ["training.completed", "end"]
    logs = [e.data["step"] for e in trained.events if e.type == "training.log"]
    assert logs == [1, 2, 3, 4]
    saved = [e.data["step"] for e in trained.events if e.type == "checkpoint.saved"]
    assert saved == [2, 4]
    # each checkpoint comes right after the log of its step
    assert types.index("checkpoint.saved") == types.index("training.log") + 2
    ids = [int(e.id) for e in trained.events if e.type != "end"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(e.data["jobId"] == trained.job_id for e in trained.events)
    assert all(isinstance(e.data["loss"], float) for e in trained.events
               if e.type == "training.log")


def test_resume_after_an_id_gets_exactly_the_later_events(trained: TrainedJob) -> None:
    client, scope = trained.ws.client, trained.ws.scope
    replay = list(client.stream_events(trained.job_id, scope))
    assert [(e.id, e.type) for e in replay] == [(e.id, e.type) for e in trained.events]
    third = trained.events[2]
    later = list(client.stream_events(trained.job_id, scope, last_event_id=third.id))
    assert [(e.id, e.type) for e in later] == [(e.id, e.type) for e in trained.events[3:]]
    assert [e.data for e in later[:-1]] == [e.data for e in trained.events[3:-1]]


def test_trainer_callbacks_fire_in_order(trained: TrainedJob) -> None:
    kinds = [kind for kind, _ in trained.calls]
    assert kinds == ["started", "log", "log", "checkpoint", "log", "log", "checkpoint",
                     "completed"]
    started = trained.calls[0][1]
    assert isinstance(started, StartedInfo) and started.job.status == "running"
    logs = [info for kind, info in trained.calls if kind == "log"]
    assert all(isinstance(i, LogInfo) and i.loss is not None for i in logs)
    assert [i.step for i in logs] == [1, 2, 3, 4]
    checkpoint = trained.calls[3][1]
    assert isinstance(checkpoint, CheckpointInfo)
    assert checkpoint.adapter == {"kind": "checkpoint", "jobId": trained.job_id, "step": 2}
    assert {a["pathname"] for a in checkpoint.artifacts} >= {
        "checkpoints/step-2/adapter_model.safetensors"}
    completed = trained.calls[-1][1]
    assert isinstance(completed, CompletedInfo)
    assert completed.job.status == "completed" and completed.job.has_final_adapter
    assert completed.metrics == trained.events[-2].data["metrics"]
    assert completed.metrics["totalSteps"] == 4 and completed.metrics["totalTime"] > 0
    assert math.isfinite(completed.metrics["finalLoss"])
    assert completed.metrics["finalLoss"] == pytest.approx(logs[-1].loss, rel=1e-4)
    assert trained.result.job == completed.job
    assert "final/adapter_model.safetensors" in {a["pathname"]
                                                 for a in trained.result.artifacts}


def test_job_config_holds_only_the_given_options(trained: TrainedJob) -> None:
    job = trained.ws.client.get_job(trained.job_id, trained.ws.scope)
    assert job.config == {"model": EMBEDDED, **TINY, "seed": 7,
                          "datasetSource": {"type": "upload", "uploadId": trained.dataset_id}}


def test_get_job_and_list_jobs(trained: TrainedJob) -> None:
    client, scope = trained.ws.client, trained.ws.scope
    job = client.get_job(trained.job_id, scope)
    assert job.status == "completed" and job.completed_at and job.error is None
    assert [c.step for c in job.checkpoints] == [2, 4]
    assert trained.job_id in [j.id for j in client.list_jobs(scope)]
    with pytest.raises(NotFoundError):
        client.get_job("00000000-0000-4000-8000-000000000000", scope)


def test_cancelling_a_finished_job_is_a_conflict(trained: TrainedJob) -> None:
    with pytest.raises(ConflictError) as caught:
        trained.ws.client.cancel_job(trained.job_id, trained.ws.scope)
    assert caught.value.status == 409
    assert "already completed" in caught.value.message


def test_async_stream_and_resume(trained: TrainedJob, cloud) -> None:
    async def scenario() -> tuple[list[JobEvent], list[JobEvent]]:
        async with AsyncCloudApiClient(base_url=cloud.url,
                                       credentials=trained.ws.credentials) as client:
            everything = [e async for e in client.stream_events(trained.job_id,
                                                                trained.ws.scope)]
            later = [e async for e in client.stream_events(
                trained.job_id, trained.ws.scope, last_event_id=trained.events[-3].id)]
            assert (await client.get_job(trained.job_id, trained.ws.scope)).status == \
                "completed"
            return everything, later

    everything, later = asyncio.run(scenario())
    assert everything == trained.events
    assert [e.type for e in later] == ["training.completed", "end"]


def test_malformed_dataset_is_refused_with_line_numbers(trained: TrainedJob,
                                                        tmp_path: Path) -> None:
    client, scope = trained.ws.client, trained.ws.scope
    jobs_before = client.list_jobs(scope)
    with pytest.raises(BadRequestError) as caught:
        client.upload_dataset(scope, write_bad_dataset(tmp_path / "bad.jsonl"))
    assert "line 2" in caught.value.message and "line 4" in caught.value.message
    assert [d.id for d in client.list_datasets(scope)] == [trained.dataset_id]
    with pytest.raises(BadRequestError):
        create_trainer(name="bad", dataset=tmp_path / "bad.jsonl", client=client,
                       scope=scope).start()
    assert client.list_jobs(scope) == jobs_before


def test_upload_from_bytes_with_a_name(trained: TrainedJob, tmp_path: Path) -> None:
    client, scope = trained.ws.client, trained.ws.scope
    raw = write_chat_dataset(tmp_path / "x.jsonl", count=3).read_bytes()
    uploaded = client.upload_dataset(scope, raw, name="three.jsonl")
    assert (uploaded.name, uploaded.num_examples, uploaded.size_bytes) == \
        ("three.jsonl", 3, len(raw))


def test_import_the_trained_adapter(trained: TrainedJob, cloud, tmp_path: Path) -> None:
    client, scope = trained.ws.client, trained.ws.scope
    adapter = copy_final_adapter(cloud, trained.job_id, tmp_path / "adapter")
    job = client.import_adapter(scope, adapter, name="imported", model=EMBEDDED)
    assert (job.status, job.name, job.has_final_adapter) == ("completed", "imported", True)
    assert job.config["model"] == EMBEDDED
    assert client.get_job(job.id, scope).status == "completed"


def test_import_of_an_incompatible_adapter_is_refused(trained: TrainedJob, cloud,
                                                     tmp_path: Path) -> None:
    client, scope = trained.ws.client, trained.ws.scope
    before = client.list_jobs(scope)
    adapter = break_target_modules(copy_final_adapter(cloud, trained.job_id, tmp_path / "a"))
    with pytest.raises(BadRequestError) as caught:
        client.import_adapter(scope, adapter, name="broken")
    assert "no_such_proj" in caught.value.message
    assert "does not fit" in caught.value.message
    assert client.list_jobs(scope) == before
    with pytest.raises(FileNotFoundError, match=r"adapter_config\.json"):
        client.import_adapter(scope, tmp_path, name="empty")


def test_a_raising_callback_stops_wait_and_cancel_ends_the_job(trained: TrainedJob,
                                                               cloud, monkeypatch) -> None:
    """Through the bootstrap path: no client given, so credentials and .arkor/state.json are
    created here. The long job is cancelled after training.started."""
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", cloud.url)
    dataset = write_chat_dataset(Path("long.jsonl"), count=64)

    class Stop(Exception):
        pass

    def on_started(info: StartedInfo) -> None:
        raise Stop(info.job.id)

    with create_trainer(name="long", dataset=dataset, max_steps=500, batch_size=2,
                        max_length=64, on_started=on_started) as trainer:
        assert trainer.cancel() is None  # not started: nothing to cancel
        with pytest.raises(Stop):
            trainer.wait()
        assert read_state() is not None
        began = time.monotonic()
        cancelled = trainer.cancel()
        assert cancelled is not None and cancelled.status == "cancelled"
        state = read_state()
        client = CloudApiClient(base_url=cloud.url, credentials=read_credentials())
        scope = {"orgSlug": state.org_slug, "projectSlug": state.project_slug}
        tail = list(client.stream_events(trainer.job_id, scope))
        assert time.monotonic() - began < 10
        assert [e.type for e in tail[-2:]] == ["training.cancelled", "end"]
        assert "training.completed" not in [e.type for e in tail]
        assert client.get_job(trainer.job_id, scope).status == "cancelled"
        with pytest.raises(ConflictError):
            trainer.cancel()
        client.close()


def test_on_failed_gets_the_step_the_job_reached(trained: TrainedJob, cloud) -> None:
    """The runner is killed after its second step, so the server fails the job itself with the
    last step it stored; ``on_failed`` gets that step."""
    seen: list[Any] = []

    def on_log(info: LogInfo) -> None:
        seen.append(info)
        if info.step == 2:
            os.killpg(cloud.app.state.supervisor.runner_pid(info.job.id), signal.SIGKILL)

    trainer = create_trainer(
        name="killed", dataset={"type": "upload", "uploadId": trained.dataset_id},
        max_steps=500, batch_size=2, max_length=64, save_steps=0, client=trained.ws.client,
        scope=trained.ws.scope, on_log=on_log, on_failed=seen.append,
        on_completed=seen.append)
    result = trainer.wait()
    *logs, failed = seen
    assert isinstance(failed, FailedInfo) and "SIGKILL" in failed.error
    assert failed.step == logs[-1].step >= 2
    assert result.job.status == "failed" and result.artifacts == []


def test_async_trainer_follows_a_job(trained: TrainedJob, cloud) -> None:
    """A dry run (at most 2 steps) through the async twin, with an async callback."""
    seen: list[str] = []

    async def on_log(info: LogInfo) -> None:
        await asyncio.sleep(0)
        seen.append(f"log {info.step}")

    async def scenario() -> TrainingResult:
        async with AsyncCloudApiClient(base_url=cloud.url,
                                       credentials=trained.ws.credentials) as client:
            trainer = create_async_trainer(
                name="dry", dataset={"type": "upload", "uploadId": trained.dataset_id},
                dry_run=True, batch_size=2, max_length=64, save_steps=None,
                client=client, scope=trained.ws.scope,
                on_started=lambda info: seen.append("started"), on_log=on_log,
                on_completed=lambda info: seen.append(
                    f"completed {info.metrics['totalSteps']}"))
            return await trainer.wait()

    result = asyncio.run(scenario())
    assert seen == ["started", "log 1", "log 2", "completed 2"]
    assert result.job.status == "completed" and result.job.checkpoints == []
