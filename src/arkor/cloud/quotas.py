"""Quotas per org: the operator's ``ARKOR_QUOTA_*`` settings, checked where a request would
exceed them, and the org's usage against them for ``GET /v1/me``.

A count is checked inside the transaction that creates the row, after a write that changes
nothing to the org's row: on PostgreSQL it locks that row, on SQLite it takes the database's
one write lock (a ``SELECT … FOR UPDATE`` would not: SQLite ignores it and reads outside any
transaction). So two requests at once cannot both take the last place, and a refused request
leaves nothing behind. A refusal
is 403 naming the setting and its value (429 for the job queue: that one clears by waiting).
0 means no limit. ``quota_running_jobs`` is not a refusal: the supervisor leaves an org's
further jobs queued; ``quota_job_wall_s`` stops a runner that runs past it.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from arkor.cloud.errors import ApiError
from arkor.cloud.settings import Settings
from arkor.contract import models as m
from arkor.contract.job_config import TrainingConfig, plan_steps
from arkor.store.tables import Dataset, Deployment, DeploymentKey, Job, Org

MB = 1024 * 1024


def env_name(setting: str) -> str:
    return f"ARKOR_{setting.upper()}"


def limit_of(settings: Settings, setting: str) -> int | None:
    """The setting's limit; None when it is 0 (no limit)."""
    value = int(getattr(settings, setting))
    return value or None


def dataset_bytes_limit(settings: Settings) -> int | None:
    mb = limit_of(settings, "quota_dataset_mb")
    return mb * MB if mb else None


def _refuse(setting: str, settings: Settings, detail: str, hint: str, *,
            status: int = 403) -> ApiError:
    value = getattr(settings, setting)
    return ApiError(status, f"Over this server's quota {env_name(setting)}={value}: {detail}. "
                            f"{hint}")


def lock_org(session: Session, org_id: str) -> None:
    """Hold the org's row until the transaction ends: the counts below stay true until the
    new row is in."""
    session.execute(update(Org).where(Org.id == org_id).values(slug=Org.slug))


def _count(session: Session, statement: object) -> int:
    return int(session.execute(statement).scalar_one())  # type: ignore[call-overload]


def deployments_in(session: Session, org_id: str) -> int:
    return _count(session, select(func.count()).select_from(Deployment)
                  .where(Deployment.org_id == org_id))


def datasets_in(session: Session, org_id: str) -> tuple[int, int]:
    """How many datasets the org keeps and their bytes."""
    count, size = session.execute(
        select(func.count(), func.coalesce(func.sum(Dataset.size_bytes), 0))
        .where(Dataset.org_id == org_id)).one()
    return int(count), int(size)


def jobs_in(session: Session, org_id: str, status: str) -> int:
    return _count(session, select(func.count()).select_from(Job)
                  .where(Job.org_id == org_id, Job.status == status))


def check_new_deployment(session: Session, settings: Settings, org_id: str) -> None:
    limit = limit_of(settings, "quota_deployments")
    if limit is None:
        return
    lock_org(session, org_id)
    if (used := deployments_in(session, org_id)) >= limit:
        raise _refuse("quota_deployments", settings, f"this org has {used} deployments",
                      "Delete one you no longer need, or ask the operator to raise the quota.")


def check_new_key(session: Session, settings: Settings, org_id: str, deployment_id: str) -> None:
    limit = limit_of(settings, "quota_keys_per_deployment")
    if limit is None:
        return
    lock_org(session, org_id)
    used = _count(session, select(func.count()).select_from(DeploymentKey).where(
        DeploymentKey.deployment_id == deployment_id, DeploymentKey.revoked_at.is_(None)))
    if used >= limit:
        raise _refuse("quota_keys_per_deployment", settings,
                      f"this deployment has {used} unrevoked keys",
                      "Revoke one you no longer use, or ask the operator to raise the quota.")


def check_dataset_room(session: Session, settings: Settings, org_id: str, size: int) -> int | None:
    """Refuse a dataset of ``size`` bytes (0 before its size is known) that would put the org
    over its count or bytes; else the bytes it may still add (None: no limit)."""
    count_limit = limit_of(settings, "quota_datasets")
    bytes_limit = dataset_bytes_limit(settings)
    if count_limit is None and bytes_limit is None:
        return None
    lock_org(session, org_id)
    count, used = datasets_in(session, org_id)
    if count_limit is not None and count >= count_limit:
        raise _refuse("quota_datasets", settings, f"this org keeps {count} datasets",
                      "Delete one (DELETE /v1/datasets/{id}), or ask the operator to raise the "
                      "quota.")
    if bytes_limit is None:
        return None
    if used + size > bytes_limit:
        raise too_many_dataset_bytes(settings, used, size)
    return bytes_limit - used


def too_many_dataset_bytes(settings: Settings, used: int, size: int) -> ApiError:
    upload = f" and this upload {size / MB:.1f} MB" if size else ""
    return _refuse("quota_dataset_mb", settings,
                   f"this org's datasets take {used / MB:.1f} MB{upload}",
                   "Nothing of the upload was kept. Delete datasets you no longer need, or ask "
                   "the operator to raise the quota.")


def check_new_job(session: Session, settings: Settings, org_id: str, config: TrainingConfig,
                  num_examples: int) -> None:
    """The job's own bounds (403), then the org's queue (429)."""
    bounds = (("quota_job_epochs", config.num_train_epochs, "numTrainEpochs"),
              ("quota_job_batch_size", config.batch_size, "batchSize"))
    for setting, value, field in bounds:
        limit = limit_of(settings, setting)
        if limit is not None and value > limit:
            raise _refuse(setting, settings, f"config.{field} is {value:g}",
                          f"Ask for at most {limit}.")
    limit = limit_of(settings, "quota_job_steps")
    steps = plan_steps(config, num_examples).total_steps
    if limit is not None and steps > limit:
        how = (f"config.maxSteps is {steps}" if config.max_steps else
               f"{config.num_train_epochs:g} epochs of {num_examples} rows at batch size "
               f"{config.batch_size} are {steps} steps")
        raise _refuse("quota_job_steps", settings, how,
                      f"Set maxSteps to at most {limit}, or train fewer epochs.")
    limit = limit_of(settings, "quota_queued_jobs")
    if limit is None:
        return
    lock_org(session, org_id)
    if (queued := jobs_in(session, org_id, "queued")) >= limit:
        raise _refuse("quota_queued_jobs", settings, f"this org has {queued} jobs waiting to start",
                      "Try again when one has started, or cancel one.", status=429)


def usage(session: Session, org_id: str) -> m.OrgUsage:
    count, size = datasets_in(session, org_id)
    return m.OrgUsage(deployments=deployments_in(session, org_id), datasets=count,
                      dataset_bytes=size, queued_jobs=jobs_in(session, org_id, "queued"),
                      running_jobs=jobs_in(session, org_id, "running"))


def quotas(settings: Settings) -> m.Quotas:
    return m.Quotas(
        deployments=limit_of(settings, "quota_deployments"),
        keys_per_deployment=limit_of(settings, "quota_keys_per_deployment"),
        datasets=limit_of(settings, "quota_datasets"),
        dataset_bytes=dataset_bytes_limit(settings),
        queued_jobs=limit_of(settings, "quota_queued_jobs"),
        running_jobs=limit_of(settings, "quota_running_jobs"),
        job_steps=limit_of(settings, "quota_job_steps"),
        job_epochs=limit_of(settings, "quota_job_epochs"),
        job_batch_size=limit_of(settings, "quota_job_batch_size"),
        job_wall_seconds=limit_of(settings, "quota_job_wall_s"),
    )
