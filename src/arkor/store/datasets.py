"""Datasets uploaded to the server for training."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from arkor.store.tables import Dataset


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
