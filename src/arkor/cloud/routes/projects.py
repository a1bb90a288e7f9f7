"""Projects: the scope that jobs and deployments live in."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from arkor.cloud.auth import OrgScopeDep
from arkor.cloud.deps import DatabaseDep
from arkor.cloud.dto import project_dto
from arkor.cloud.errors import ApiError, error_responses
from arkor.contract import models as m
from arkor.contract.deployments import check_project_slug
from arkor.store import projects
from arkor.store.errors import SlugTaken
from arkor.store.tables import Org

router = APIRouter(tags=["projects"])


class CreateProjectBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    name: str = Field(min_length=1, max_length=200)
    slug: str = Field(description="1-64 chars of [a-z0-9-], not starting or ending with '-'")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name must not be blank")
        return value.strip()

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        return check_project_slug(value)


class ProjectEnvelope(BaseModel):
    project: m.Project


@router.get(
    "/v1/projects",
    response_model=m.ProjectList,
    responses=error_responses(400, 401, 403, 426),
    summary="List the org's projects",
)
def list_projects(db: DatabaseDep, org: OrgScopeDep) -> m.ProjectList:
    with db.session() as session:
        org_row = session.get(Org, org.org_id)
        assert org_row is not None
        return m.ProjectList(
            org=m.Org(id=org_row.id, slug=org_row.slug, name=org_row.name),
            projects=[project_dto(p) for p in projects.list_projects(session, org.org_id)],
        )


@router.post(
    "/v1/projects",
    status_code=201,
    response_model=ProjectEnvelope,
    responses=error_responses(400, 401, 403, 409, 426),
    summary="Create a project in the org",
)
def create_project(body: CreateProjectBody, db: DatabaseDep, org: OrgScopeDep) -> ProjectEnvelope:
    try:
        with db.session() as session:
            project = projects.create_project(
                session, org_id=org.org_id, slug=body.slug, name=body.name
            )
            return ProjectEnvelope(project=project_dto(project))
    except SlugTaken as exc:
        raise ApiError(
            409, f"Project slug {body.slug!r} is already taken in org {org.org_slug!r}"
        ) from exc
