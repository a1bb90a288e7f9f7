"""Fine-tuning jobs and their checkpoints: what deployment targets point at."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from arkor.contract.events import CHECKPOINT, LOG
from arkor.store.tables import Checkpoint, Job, JobEvent, Supervisor, UTCDateTime, utcnow

STEP_EVENTS = (LOG, CHECKPOINT)


def create_job(
    session: Session,
    *,
    org_id: str,
    project_id: str,
    name: str,
    config: dict[str, Any],
    status: str = "queued",
    artifacts_dir: str | None = None,
    completed_at: datetime | None = None,
    job_id: str | None = None,
) -> Job:
    job = Job(
        id=job_id or str(uuid.uuid4()),
        org_id=org_id,
        project_id=project_id,
        name=name,
        config=config,
        status=status,
        artifacts_dir=artifacts_dir,
        completed_at=completed_at,
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, project_id: str, job_id: str) -> Job | None:
    return session.execute(
        select(Job).where(Job.project_id == project_id, Job.id == job_id)
    ).scalar_one_or_none()


def list_jobs(session: Session, project_id: str) -> list[Job]:
    return list(
        session.execute(
            select(Job).where(Job.project_id == project_id).order_by(Job.created_at.desc())
        ).scalars()
    )


def add_checkpoint(session: Session, *, job_id: str, step: int, path: str) -> Checkpoint:
    checkpoint = Checkpoint(id=str(uuid.uuid4()), job_id=job_id, step=step, path=path)
    session.add(checkpoint)
    session.flush()
    return checkpoint


def get_checkpoint(session: Session, job_id: str, step: int) -> Checkpoint | None:
    return session.execute(
        select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.step == step)
    ).scalar_one_or_none()


def list_checkpoints(session: Session, job_id: str) -> list[Checkpoint]:
    return list(
        session.execute(
            select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step)
        ).scalars()
    )


TERMINAL_STATUSES = ("completed", "failed", "cancelled")


class JobMoved(Exception):
    """Another writer changed the job's status after this one read it."""


def set_status(session: Session, job: Job, status: str, *, error: str | None = None) -> None:
    """Move ``job`` to ``status``, written at once and only if its status is still the one it
    was read with (the status is the row's version, see :class:`~arkor.store.tables.Job`).

    Raises :class:`JobMoved` when another writer moved it first: the caller's transaction
    then rolls back, and the caller reads the job again to see where it is now.
    """
    job_id = job.id
    job.status = status
    if status == "running" and job.started_at is None:
        job.started_at = utcnow()
    if status in TERMINAL_STATUSES:
        job.completed_at = utcnow()
        job.error = error
    try:
        session.flush()
    except StaleDataError as exc:
        raise JobMoved(f"job {job_id} changed status while this was writing it") from exc


def add_event(session: Session, job_id: str, payload: dict[str, Any]) -> JobEvent:
    event = JobEvent(job_id=job_id, type=str(payload["type"]), payload=payload)
    session.add(event)
    session.flush()
    return event


def events_after(session: Session, job_id: str, after_id: int, limit: int = 500) -> list[JobEvent]:
    return list(
        session.execute(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.id > after_id)
            .order_by(JobEvent.id)
            .limit(limit)
        ).scalars()
    )


def last_step(session: Session, job_id: str) -> int | None:
    """The step of the job's latest stored ``training.log`` or ``checkpoint.saved``, if any."""
    payload = session.execute(
        select(JobEvent.payload)
        .where(JobEvent.job_id == job_id, JobEvent.type.in_(STEP_EVENTS))
        .order_by(JobEvent.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    step = payload.get("step") if isinstance(payload, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def jobs_with_status(session: Session, statuses: tuple[str, ...]) -> list[Job]:
    return list(
        session.execute(
            select(Job).where(Job.status.in_(statuses)).order_by(Job.created_at)
        ).scalars()
    )


def database_now(session: Session) -> datetime:
    """The database's clock (whole seconds on SQLite): what every server of one database
    shares, whatever each machine's own clock says."""
    return session.execute(select(func.now(type_=UTCDateTime()))).scalar_one()


def beat(session: Session, supervisor_id: str) -> None:
    """Say that supervisor ``supervisor_id`` is alive now."""
    now = database_now(session)
    supervisor = session.get(Supervisor, supervisor_id)
    if supervisor is None:
        session.add(Supervisor(id=supervisor_id, seen_at=now))
    else:
        supervisor.seen_at = now
    session.flush()


def forget_supervisor(session: Session, supervisor_id: str) -> None:
    session.execute(delete(Supervisor).where(Supervisor.id == supervisor_id))


def orphaned_jobs(session: Session, supervisor_id: str, *,
                  others_alive_within: float | None) -> list[str]:
    """Running jobs that no live supervisor runs: not ``supervisor_id``'s own, and started by
    one that has not beaten within ``others_alive_within`` seconds (None: every other one is
    gone, as with SQLite, which one process uses at a time), or by nobody on record."""
    query = select(Job.id).where(Job.status == "running",
                                 Job.supervisor_id.is_distinct_from(supervisor_id))
    if others_alive_within is not None:
        cutoff = database_now(session) - timedelta(seconds=others_alive_within)
        alive = select(Supervisor.id).where(Supervisor.seen_at >= cutoff)
        query = query.where(or_(Job.supervisor_id.is_(None), Job.supervisor_id.not_in(alive)))
    return list(session.execute(query.order_by(Job.created_at)).scalars())
