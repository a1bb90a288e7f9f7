"""Training jobs: create (validating config and every dataset line first), list, get,
cancel, and the live event stream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from arkor.cloud import quotas
from arkor.cloud.auth import ProjectScope, ProjectScopeDep
from arkor.cloud.deps import DatabaseDep, SettingsDep, SupervisorDep
from arkor.cloud.dto import job_dto
from arkor.cloud.errors import ApiError, error_responses
from arkor.cloud.settings import Settings
from arkor.contract import models as m
from arkor.contract.events import CANCELLED
from arkor.contract.job_config import TrainingConfig
from arkor.store import datasets, jobs
from arkor.targets import job_or_404
from arkor.training.errors import DatasetError, JobConfigError
from arkor.training.events import utc_timestamp

router = APIRouter(tags=["jobs"])

SCOPED = error_responses(400, 401, 403, 404, 426)


class CreateJobBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    name: str = Field(min_length=1, max_length=200)
    config: dict[str, Any] = Field(
        description="JobConfig: model, datasetSource, loraR, loraAlpha, maxLength, maxSteps, "
        "numTrainEpochs, learningRate, batchSize, warmupSteps, loggingSteps, saveSteps, "
        "evalSteps, dryRun, ... (unknown fields are kept)"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name must not be blank")
        return value.strip()


class JobEnvelope(BaseModel):
    job: m.TrainingJob


class JobList(BaseModel):
    jobs: list[m.TrainingJob]


def check_job_config(
    session: Any, settings: Settings, scope: ProjectScope, raw: dict[str, Any]
) -> tuple[TrainingConfig, int]:
    """Everything that would make the job fail before its first step, or train it on a device
    it did not ask for (``gpuTypes``), as a 400/404 now; the config parsed, and the rows of its
    training dataset.

    A dataset on the server's disk is only read inside ``ARKOR_DATASET_ROOTS``, and its
    problems are reported without its content (the caller did not send that file).
    """
    from arkor.cloud.dataset_roots import dataset_path_check
    from arkor.contract.job_config import parse_job_config
    from arkor.training.dataset import dataset_location, validate_dataset

    try:
        config = parse_job_config(raw)
    except JobConfigError as exc:
        raise ApiError(400, f"config: {exc}") from exc
    base = settings.registry.get(config.model)
    if base is None:
        raise ApiError(400, f"config.model: unknown base model {config.model!r}. Registered: "
                            f"{', '.join(settings.registry.names)}")
    if not base.local:
        raise ApiError(400, f"config.model: {config.model!r} is served by upstream servers "
                            "only; training needs its weights here (register it with "
                            "--base-model NAME=PATH as well)")
    if config.gpu_types:
        from arkor.training.gpus import gpu_types_refusal, host_gpu_names

        refusal = gpu_types_refusal(config.gpu_types, host_gpu_names())
        if refusal is not None:
            raise ApiError(400, f"config.gpuTypes: {refusal}")

    def resolve_upload(upload_id: str) -> Path:
        found = datasets.get_dataset(session, scope.project_id, upload_id)
        if found is None:
            raise ApiError(404, f"Dataset {upload_id!r} not found in this project; upload it "
                                "with POST /v1/datasets first")
        return Path(found.path)

    check_path = dataset_path_check(settings)
    rows: dict[str, int] = {}
    for field, source in (("datasetSource", config.dataset_source),
                          ("evalDatasetSource", config.eval_dataset_source)):
        if source is None:
            continue
        try:
            path, split = dataset_location(source, resolve_upload=resolve_upload,
                                           check_path=check_path)
            rows[field] = validate_dataset(path, split=split).num_examples
        except DatasetError as exc:
            shown = exc if source.type == "upload" else exc.without_details()
            raise ApiError(400, f"config.{field}: {shown}") from exc
        except JobConfigError as exc:
            raise ApiError(400, f"config.{field}: {exc}") from exc
    return config, rows["datasetSource"]


def _load(session: Any, scope: ProjectScope, job_id: str) -> m.TrainingJob:
    job = job_or_404(session, scope.project_id, job_id)
    return job_dto(job, jobs.list_checkpoints(session, job.id))


@router.get("/v1/jobs", response_model=JobList, responses=SCOPED,
            summary="List the project's jobs, newest first")
def list_jobs(db: DatabaseDep, scope: ProjectScopeDep) -> JobList:
    with db.session() as session:
        rows = jobs.list_jobs(session, scope.project_id)
        return JobList(jobs=[job_dto(j, jobs.list_checkpoints(session, j.id)) for j in rows])


@router.post("/v1/jobs", status_code=201, response_model=JobEnvelope,
             responses=error_responses(400, 401, 403, 404, 426, 429),
             summary="Queue a LoRA fine-tuning job (the dataset is checked line by line first; "
                     "403/429 over a quota)")
def create_job(body: CreateJobBody, db: DatabaseDep, scope: ProjectScopeDep, settings: SettingsDep,
               supervisor: SupervisorDep) -> JobEnvelope:
    with db.session() as session:
        config, num_examples = check_job_config(session, settings, scope, body.config)
        quotas.check_new_job(session, settings, scope.org_id, config, num_examples)
        job = jobs.create_job(session, org_id=scope.org_id, project_id=scope.project_id,
                              name=body.name, config=body.config)
        created = job_dto(job, [])
    supervisor.submit()
    return JobEnvelope(job=created)


@router.get("/v1/jobs/{job_id}", response_model=JobEnvelope, responses=SCOPED,
            summary="Get one job with its checkpoints")
def get_job(job_id: str, db: DatabaseDep, scope: ProjectScopeDep) -> JobEnvelope:
    with db.session() as session:
        return JobEnvelope(job=_load(session, scope, job_id))


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobEnvelope,
             responses=error_responses(400, 401, 403, 404, 409, 426),
             summary="Cancel a queued or running job (409 once it has ended)")
def cancel_job(job_id: str, db: DatabaseDep, scope: ProjectScopeDep,
               supervisor: SupervisorDep) -> JobEnvelope:
    for _look in range(3):  # a job moves at most twice (queued, running, ended): 3 looks do
        try:
            with db.session() as session:
                job = job_or_404(session, scope.project_id, job_id)
                if job.status in jobs.TERMINAL_STATUSES:
                    raise ApiError(409, f"Job is already {job.status}")
                jobs.set_status(session, job, "cancelled")
                jobs.add_event(session, job.id, {"type": CANCELLED, "jobId": job.id,
                                                 "timestamp": utc_timestamp()})
            break
        except jobs.JobMoved:
            continue  # the dispatcher started it, or it ended, while this read it: look again
    supervisor.cancel(job_id)
    with db.session() as session:
        return JobEnvelope(job=_load(session, scope, job_id))
