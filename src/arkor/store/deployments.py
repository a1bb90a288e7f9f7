"""Deployments: a globally unique slug bound to a target, an auth mode and a retention policy.

A deleted deployment's slug is held for its project for a grace period (``released_slugs``),
so traffic still sent to the old URL never reaches another tenant. Expired holds are removed
lazily: when a deployment is deleted, and when the slug is claimed again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arkor.store.errors import SlugHeld, SlugTaken
from arkor.store.tables import Deployment, ReleasedSlug, utcnow


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
    grace: timedelta = timedelta(0),
    expires_at: datetime | None = None,
) -> Deployment:
    """Insert; the slug's unique constraint (not a prior read) decides who wins a race.

    A slug another project released less than ``grace`` ago raises :class:`SlugHeld`. The
    hold is read after the insert, so a delete that commits in between is still seen.
    """
    now = utcnow()
    # Clearing the slug's expired hold first also opens the write transaction on SQLite, so
    # the savepoint below nests inside it and a SlugHeld undoes the insert.
    session.execute(delete(ReleasedSlug).where(ReleasedSlug.slug == slug,
                                               ReleasedSlug.released_at <= now - grace))
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
        expires_at=expires_at,
        created_at=now,
        updated_at=now,
        **vars(target),
    )
    try:
        with session.begin_nested():
            session.add(deployment)
    except IntegrityError as exc:
        raise SlugTaken("Deployment", slug) from exc
    held = session.get(ReleasedSlug, slug)
    if held is not None:
        if held.project_id != project_id:
            raise SlugHeld(slug)
        session.delete(held)
        session.flush()
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


def expired_deployments(session: Session, now: datetime, limit: int = 100) -> list[Deployment]:
    """Deployments past their ``expires_at`` (at most ``limit``), oldest expiry first."""
    return list(session.execute(select(Deployment).where(
        Deployment.expires_at.is_not(None), Deployment.expires_at <= now)
        .order_by(Deployment.expires_at).limit(limit)).scalars())


def delete_deployment(
    session: Session, deployment: Deployment, *, grace: timedelta = timedelta(0)
) -> None:
    """Delete, and hold the slug for the deployment's project for ``grace``."""
    now = utcnow()
    session.execute(delete(ReleasedSlug).where(ReleasedSlug.released_at <= now - grace))
    if grace > timedelta(0):
        session.merge(ReleasedSlug(slug=deployment.slug, project_id=deployment.project_id,
                                   released_at=now))
    session.delete(deployment)
    session.flush()
