"""Dataset uploads: a chat-format JSONL file, checked line by line before it is kept.

Kept as ``<data dir>/datasets/<project id>/<id>.jsonl``, mode 0600 in 0700 directories, within
the org's dataset quotas (count and bytes: an upload that passes the bytes is stopped as it
streams, and nothing of it is kept). Deleting one frees its room; a dataset that a queued or
running job will read cannot be deleted (409).
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from arkor.cloud import quotas
from arkor.cloud.auth import ProjectScopeDep
from arkor.cloud.deps import DatabaseDep, SettingsDep
from arkor.cloud.dto import dataset_dto
from arkor.cloud.errors import ApiError, error_responses
from arkor.cloud.files import open_private, private_dir
from arkor.contract import models as m
from arkor.store import datasets
from arkor.store.tables import Dataset
from arkor.training.errors import DatasetError

router = APIRouter(tags=["datasets"])


class DatasetEnvelope(BaseModel):
    dataset: m.UploadedDataset


class DatasetList(BaseModel):
    datasets: list[m.UploadedDataset]


@router.post(
    "/v1/datasets",
    status_code=201,
    response_model=DatasetEnvelope,
    responses=error_responses(400, 401, 403, 404, 426),
    description="403 also when the org's dataset quotas (ARKOR_QUOTA_DATASETS, "
                "ARKOR_QUOTA_DATASET_MB) would be passed; nothing of the upload is kept.",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    summary="Upload a chat-format JSONL dataset ({\"messages\": [...]} per line)",
)
async def upload_dataset(
    request: Request,
    db: DatabaseDep,
    scope: ProjectScopeDep,
    settings: SettingsDep,
    name: Annotated[str, Query(min_length=1, max_length=200,
                               description="File name to show")] = "dataset.jsonl",
) -> DatasetEnvelope:
    def room() -> int | None:
        with db.session() as session:
            return quotas.check_dataset_room(session, settings, scope.org_id, 0)

    bytes_left = await run_in_threadpool(room)
    dataset_id = str(uuid.uuid4())
    folder = private_dir(settings.data_dir / "datasets" / scope.project_id)
    path = folder / f"{dataset_id}.jsonl"
    size = 0
    try:
        with open_private(path) as handle:
            # The body guard bounds the upload at ARKOR_MAX_UPLOAD_MB (arkor.middleware.guards).
            async for chunk in request.stream():
                size += len(chunk)
                if bytes_left is not None and size > bytes_left:
                    limit = quotas.dataset_bytes_limit(settings) or 0
                    raise quotas.too_many_dataset_bytes(settings, limit - bytes_left, size)
                handle.write(chunk)
        if size == 0:
            raise ApiError(400, "The request body is empty: send the JSONL file as the body")
        summary = await run_in_threadpool(_validate, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise

    def save() -> m.UploadedDataset:
        with db.session() as session:
            quotas.check_dataset_room(session, settings, scope.org_id, size)
            row = datasets.add_dataset(session, Dataset(
                id=dataset_id, org_id=scope.org_id, project_id=scope.project_id,
                name=name.strip() or "dataset.jsonl", path=str(path),
                num_examples=summary, size_bytes=size,
            ))
            return dataset_dto(row)

    try:
        return DatasetEnvelope(dataset=await run_in_threadpool(save))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise


def _validate(path: Path) -> int:
    from arkor.training.dataset import validate_dataset

    try:
        return validate_dataset(path).num_examples
    except DatasetError as exc:
        raise ApiError(400, f"The dataset has problems; nothing was saved.\n{exc}") from exc


@router.get("/v1/datasets", response_model=DatasetList,
            responses=error_responses(400, 401, 403, 404, 426),
            summary="List the project's uploaded datasets")
def list_datasets(db: DatabaseDep, scope: ProjectScopeDep) -> DatasetList:
    with db.session() as session:
        return DatasetList(datasets=[dataset_dto(d)
                                     for d in datasets.list_datasets(session, scope.project_id)])


@router.delete("/v1/datasets/{dataset_id}", status_code=204, response_class=Response,
               responses=error_responses(400, 401, 403, 404, 409, 426),
               summary="Delete an uploaded dataset (409 while a queued or running job uses it)")
def delete_dataset(dataset_id: str, db: DatabaseDep, scope: ProjectScopeDep) -> Response:
    with db.session() as session:
        row = datasets.get_dataset(session, scope.project_id, dataset_id)
        if row is None:
            raise ApiError(404, f"Dataset {dataset_id!r} not found in this project")
        if users := datasets.jobs_reading(session, row):
            raise ApiError(409, f"Dataset {dataset_id!r} is read by job {users[0]!r}, which "
                                "has not ended; cancel it or wait for it to end")
        path = Path(row.path)
        datasets.delete_dataset(session, row)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return Response(status_code=204)
