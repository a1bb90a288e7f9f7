"""Projects inside an org."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arkor.store.errors import SlugTaken
from arkor.store.tables import Project


def list_projects(session: Session, org_id: str) -> list[Project]:
    return list(
        session.execute(
            select(Project).where(Project.org_id == org_id).order_by(Project.created_at)
        ).scalars()
    )


def project_by_slug(session: Session, org_id: str, slug: str) -> Project | None:
    return session.execute(
        select(Project).where(Project.org_id == org_id, Project.slug == slug)
    ).scalar_one_or_none()


def create_project(session: Session, *, org_id: str, slug: str, name: str) -> Project:
    project = Project(id=str(uuid.uuid4()), org_id=org_id, slug=slug, name=name)
    try:
        with session.begin_nested():
            session.add(project)
    except IntegrityError as exc:
        raise SlugTaken("Project", slug) from exc
    return project
