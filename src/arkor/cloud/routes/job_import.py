"""``POST /v1/jobs/import``: register a PEFT LoRA adapter trained elsewhere as a completed job.

The files are uploaded as multipart form data (so the CLI works against a remote server),
checked against the chosen base model (LoRA type, target modules, every tensor's shape), its
safetensors header checked field by field and its weights for NaN or infinite values, and
kept as the job's final adapter. An adapter that does not fit is refused with a 400 that says
why, and nothing is kept.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from arkor.cloud.auth import ProjectScopeDep
from arkor.cloud.deps import DatabaseDep, SettingsDep
from arkor.cloud.dto import job_dto
from arkor.cloud.errors import ApiError, error_responses
from arkor.cloud.files import open_private, private_dir
from arkor.cloud.routes.jobs import JobEnvelope
from arkor.cloud.settings import Settings
from arkor.contract.artifacts import ADAPTER_CONFIG, ADAPTER_FILES, final_dir
from arkor.store import jobs
from arkor.store.tables import utcnow
from arkor.training.errors import AdapterIncompatible

router = APIRouter(tags=["jobs"])


def _base_model(
    settings: Settings, requested: str | None, declared: str | None
) -> tuple[str, Path]:
    from arkor.engine.embedded import ensure_embedded_model

    name = requested or (declared if declared and settings.registry.get(declared) else None)
    name = name or settings.registry.names[0]
    spec = settings.registry.get(name)
    if spec is None:
        raise ApiError(400, f"model: unknown base model {name!r}. Registered: "
                            f"{', '.join(settings.registry.names)}")
    return name, spec.path or ensure_embedded_model(settings.models_dir)


@router.post(
    "/v1/jobs/import",
    status_code=201,
    response_model=JobEnvelope,
    responses=error_responses(400, 401, 403, 404, 426),
    summary="Import a PEFT LoRA adapter directory as a completed job with a final adapter",
)
async def import_adapter(
    db: DatabaseDep,
    scope: ProjectScopeDep,
    settings: SettingsDep,
    files: Annotated[list[UploadFile], File(
        description="adapter_config.json and adapter_model.safetensors")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    model: Annotated[str | None, Form(
        description="Base model (default: the adapter's own if registered, else the embedded "
                    "model)")] = None,
) -> JobEnvelope:
    if "\x00" in name or (model and "\x00" in model) or not name.strip():
        raise ApiError(400, "name must be a non-blank string without NUL characters")
    names = {f.filename for f in files}
    if names != set(ADAPTER_FILES):
        raise ApiError(400, "Upload exactly adapter_config.json and adapter_model.safetensors "
                            f"(got: {', '.join(sorted(n or '?' for n in names)) or 'nothing'})")
    job_id = str(uuid.uuid4())
    artifacts = settings.artifacts_dir / job_id
    final = final_dir(artifacts)
    private_dir(artifacts)
    final.mkdir(mode=0o700)
    try:
        for upload in files:  # bounded by ARKOR_MAX_UPLOAD_MB (arkor.middleware.guards)
            with open_private(final / str(upload.filename)) as handle:
                while chunk := await upload.read(1024 * 1024):
                    handle.write(chunk)
        model_name = await run_in_threadpool(_check, settings, final, model)
    except BaseException:
        shutil.rmtree(artifacts, ignore_errors=True)
        raise

    def save() -> JobEnvelope:
        with db.session() as session:
            job = jobs.create_job(
                session, org_id=scope.org_id, project_id=scope.project_id, name=name.strip(),
                config={"model": model_name, "imported": True}, status="completed",
                artifacts_dir=str(artifacts), completed_at=utcnow(), job_id=job_id,
            )
            return JobEnvelope(job=job_dto(job, []))

    return await run_in_threadpool(save)


def _check(settings: Settings, final: Path, requested: str | None) -> str:
    import json

    from arkor.training.adapters import check_adapter_compatible, check_adapter_weights

    try:
        declared = json.loads((final / ADAPTER_CONFIG).read_text()).get(
            "base_model_name_or_path")
    except (ValueError, OSError, AttributeError, RecursionError) as exc:
        raise ApiError(400, f"adapter_config.json is not valid JSON: {exc}") from exc
    name, base_dir = _base_model(settings, requested, declared if isinstance(declared, str)
                                 else None)
    try:
        check_adapter_compatible(final, base_dir)
    except AdapterIncompatible as exc:
        raise ApiError(400, f"The adapter does not fit {name}: {exc}") from exc
    try:
        check_adapter_weights(final)
    except AdapterIncompatible as exc:
        raise ApiError(400, f"The adapter's weights cannot be served: {exc}") from exc
    return name
