"""Deployments: a globally unique slug bound to a target, an auth mode and a retention policy."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arkor.store.errors import SlugTaken
from arkor.store.tables import Deployment, utcnow


@dataclass(frozen=True)
class TargetColumns:
    """A deployment target flattened into its columns."""

    target_kind: str
    adapter_kind: str | None = None
    job_id: str | None = None
    checkpoint_step: int | None = None
    base_model: str | None = None


def list_deployments(session: Session, project_id: str) -> list[Deployment]:
    return list(
        session.execute(
            select(Deployment)
            .where(Deployment.project_id == project_id)
            .order_by(Deployment.created_at, Deployment.slug)
        ).scalars()
    )


def get_deployment(session: Session, project_id: str, deployment_id: str) -> Deployment | None:
    return session.execute(
        select(Deployment).where(
            Deployment.project_id == project_id, Deployment.id == deployment_id
        )
    ).scalar_one_or_none()


def deployment_by_slug(session: Session, slug: str) -> Deployment | None:
    return session.execute(select(Deployment).where(Deployment.slug == slug)).scalar_one_or_none()


def create_deployment(
    session: Session,
    *,
    org_id: str,
    project_id: str,
    slug: str,
    target: TargetColumns,
    auth_mode: str,
    run_retention_mode: str,
    run_retention_days: int | None,
) -> Deployment:
    """Insert; the slug's unique constraint (not a prior read) decides who wins a race."""
    now = utcnow()
    deployment = Deployment(
        id=str(uuid.uuid4()),
        org_id=org_id,
        project_id=project_id,
        slug=slug,
        auth_mode=auth_mode,
        url_format="openai_compat",
        enabled=True,
        custom_domain=None,
        run_retention_mode=run_retention_mode,
        run_retention_days=run_retention_days,
        created_at=now,
        updated_at=now,
        **vars(target),
    )
    try:
        with session.begin_nested():
            session.add(deployment)
    except IntegrityError as exc:
        raise SlugTaken("Deployment", slug) from exc
    return deployment


def update_deployment(session: Session, deployment: Deployment, changes: dict[str, Any]) -> None:
    target = changes.pop("target", None)
    if isinstance(target, TargetColumns):
        for column, value in vars(target).items():
            setattr(deployment, column, value)
    for column, value in changes.items():
        setattr(deployment, column, value)
    deployment.updated_at = utcnow()
    session.flush()


def delete_deployment(session: Session, deployment: Deployment) -> None:
    session.delete(deployment)
    session.flush()
