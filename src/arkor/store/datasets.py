"""Datasets uploaded to the server for training."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from arkor.contract.job_config import JobConfigError, parse_job_config
from arkor.store.tables import Dataset, Job


def add_dataset(session: Session, dataset: Dataset) -> Dataset:
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, project_id: str, dataset_id: str) -> Dataset | None:
    return session.execute(
        select(Dataset).where(Dataset.project_id == project_id, Dataset.id == dataset_id)
    ).scalar_one_or_none()


def list_datasets(session: Session, project_id: str) -> list[Dataset]:
    return list(
        session.execute(
            select(Dataset).where(Dataset.project_id == project_id).order_by(Dataset.created_at)
        ).scalars()
    )


def jobs_reading(session: Session, dataset: Dataset) -> list[str]:
    """Ids of the project's jobs that have not ended and train or evaluate on ``dataset``."""
    found = []
    for job in session.execute(select(Job).where(
            Job.project_id == dataset.project_id, Job.status.in_(("queued", "running")))).scalars():
        try:
            config = parse_job_config(job.config)
        except JobConfigError:
            continue
        sources = (config.dataset_source, config.eval_dataset_source)
        if any(s is not None and s.type == "upload" and s.upload_id == dataset.id
               for s in sources):
            found.append(job.id)
    return found


def delete_dataset(session: Session, dataset: Dataset) -> None:
    session.delete(dataset)
    session.flush()
