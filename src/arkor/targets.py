"""What a target names, resolved once: a base model, or a job's final adapter or checkpoint.

The control plane's deployments and inference routes and the edge's directory all resolve
targets here, so "target → job → checkpoint → adapter directory" and its refusals are
written once. Neither HTTP layer is imported: a refusal is a :class:`TargetError`, which the
control plane answers as ``{"error"}`` (``arkor.cloud.errors``) and the edge as a deployment
that is not serving (404).

    TargetError        a target that cannot be served
    ├── NotFound       the job or checkpoint is not in this project (404)
    └── NotServable    it is there but cannot be served (yet): unknown base model,
                       unfinished job, checkpoint without a step (400)
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from arkor.contract.artifacts import final_dir
from arkor.contract.deployments import (
    ADAPTER_FINAL,
    TARGET_ADAPTER,
    TARGET_BASE_MODEL,
    TARGET_MODEL_MENU,
)
from arkor.engine.base import AdapterRef
from arkor.engine.registry import BaseModelRegistry
from arkor.store import jobs
from arkor.store.deployments import TargetColumns
from arkor.store.tables import Deployment, Job


class TargetError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(TargetError):
    pass


class NotServable(TargetError):
    pass


def job_or_404(session: Session, project_id: str, job_id: str) -> Job:
    job = jobs.get_job(session, project_id, job_id)
    if job is None:
        raise NotFound(f"Job {job_id!r} not found in this project")
    return job


def resolve(
    session: Session, project_id: str, target: TargetColumns | Deployment, *,
    registry: BaseModelRegistry | None = None,
) -> tuple[str, AdapterRef | None]:
    """The base model and the adapter (None for a bare base model) that ``target`` serves.

    A base model is checked against ``registry`` when one is given; the edge gives none and
    serves what was checked when the deployment was made. A model menu serves the menu's
    default (the request's ``model`` may pick another); the edge's directory reads the menu
    itself, so here it is checked against ``registry`` only.
    """
    if target.target_kind == TARGET_MODEL_MENU:
        if registry is None:
            raise NotServable("A model menu is resolved against the registry")
        return registry.menu[0], None
    if target.target_kind == TARGET_BASE_MODEL:
        name = target.base_model or ""
        if registry is not None and registry.get(name) is None:
            raise NotServable(f"Unknown base model {name!r}. Registered base models: "
                              f"{', '.join(registry.names)}. An operator can register more "
                              "with `arkor cloud serve --base-model NAME=PATH`.")
        return name, None
    if target.target_kind != TARGET_ADAPTER:
        raise NotServable(f"This server does not know the target kind {target.target_kind!r}")
    job = job_or_404(session, project_id, target.job_id or "")
    base_model = str(job.config.get("model") or "")
    if target.adapter_kind == ADAPTER_FINAL:
        if job.status != "completed":
            raise NotServable(f"Job {job.id} is {job.status}; only a completed job has a "
                              "final adapter. Target a checkpoint instead, or wait for the "
                              "job to complete.")
        return base_model, AdapterRef(key=f"job:{job.id}:final",
                                      path=final_dir(Path(job.artifacts_dir or "")))
    step = target.checkpoint_step
    if step is None:
        raise NotServable("adapter.step is required for a checkpoint adapter")
    checkpoint = jobs.get_checkpoint(session, job.id, step)
    if checkpoint is None:
        steps = ", ".join(str(c.step) for c in jobs.list_checkpoints(session, job.id))
        raise NotFound(f"Job {job.id} has no checkpoint at step {step} "
                       f"(available steps: {steps or 'none yet'})")
    return base_model, AdapterRef(key=f"job:{job.id}:checkpoint:{step}",
                                  path=Path(checkpoint.path))
