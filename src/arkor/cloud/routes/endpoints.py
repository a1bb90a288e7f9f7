"""Deployments ("endpoints") and their API keys, scoped to a project."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from arkor import targets
from arkor.cloud import quotas
from arkor.cloud.auth import ProjectScope, ProjectScopeDep
from arkor.cloud.deps import DatabaseDep, SettingsDep, get_settings
from arkor.cloud.dto import created_key_dto, deployment_dto, key_dto
from arkor.cloud.errors import ApiError, error_responses
from arkor.cloud.settings import Settings, edge_base_url
from arkor.contract import models as m
from arkor.contract.deployment_bodies import (
    AdapterTargetIn,
    BaseModelTargetIn,
    CreateDeploymentBody,
    CreateKeyBody,
    ModelMenuTargetIn,
    UpdateDeploymentBody,
    UpdateKeyBody,
)
from arkor.contract.deployments import TARGET_ADAPTER, TARGET_BASE_MODEL, TARGET_MODEL_MENU
from arkor.engine.registry import BaseModelRegistry
from arkor.store import deployment_keys, deployments
from arkor.store.deployments import TargetColumns
from arkor.store.errors import SlugHeld, SlugTaken
from arkor.store.tables import Deployment, User, utcnow

router = APIRouter(tags=["endpoints"])

SCOPED = error_responses(400, 401, 403, 404, 426)


class DeploymentEnvelope(BaseModel):
    deployment: m.Deployment


class DeploymentList(BaseModel):
    deployments: list[m.Deployment]


class KeyEnvelope(BaseModel):
    key: m.CreatedDeploymentKey


class KeyList(BaseModel):
    keys: list[m.DeploymentKey]


class UpdatedKeyEnvelope(BaseModel):
    key: m.DeploymentKey


def resolve_target(
    session: Session,
    registry: BaseModelRegistry,
    scope: ProjectScope,
    target: AdapterTargetIn | BaseModelTargetIn | ModelMenuTargetIn,
) -> TargetColumns:
    """Check that the target exists in this project and flatten it into columns."""
    if isinstance(target, ModelMenuTargetIn):
        columns = TargetColumns(target_kind=TARGET_MODEL_MENU)
    elif isinstance(target, BaseModelTargetIn):
        columns = TargetColumns(target_kind=TARGET_BASE_MODEL, base_model=target.base_model)
    else:
        columns = TargetColumns(target_kind=TARGET_ADAPTER, adapter_kind=target.adapter.kind,
                                job_id=target.adapter.job_id,
                                checkpoint_step=getattr(target.adapter, "step", None))
    targets.resolve(session, scope.project_id, columns, registry=registry)
    return columns


def expiry(session: Session, settings: Settings, scope: ProjectScope,
           wanted: datetime | None) -> datetime | None:
    """``wanted``; for an anonymous identity, at most ``ARKOR_ANONYMOUS_DEPLOYMENT_DAYS``
    away (that far by default)."""
    if not capped(session, settings, scope):
        return wanted
    latest = utcnow() + timedelta(days=settings.anonymous_deployment_days)
    return latest if wanted is None or wanted > latest else wanted


def capped(session: Session, settings: Settings, scope: ProjectScope) -> bool:
    """Whether the caller's deployments must expire: an anonymous identity, with
    ``ARKOR_ANONYMOUS_DEPLOYMENT_DAYS`` set."""
    if not settings.anonymous_deployment_days:
        return False
    user = session.get(User, scope.user_id)
    return user is not None and user.anonymous


def _dto(request: Request, row: Deployment) -> m.Deployment:
    settings = get_settings(request)
    base = edge_base_url(settings, str(request.base_url), row.slug)
    return deployment_dto(row, base, settings.registry.menu)


def _get_or_404(session: Session, scope: ProjectScope, deployment_id: str) -> Deployment:
    row = deployments.get_deployment(session, scope.project_id, deployment_id)
    if row is None:
        raise ApiError(404, f"Deployment {deployment_id!r} not found in this project")
    return row


@router.get(
    "/v1/endpoints", response_model=DeploymentList, responses=SCOPED,
    summary="List the project's deployments",
)
def list_endpoints(request: Request, db: DatabaseDep, scope: ProjectScopeDep) -> DeploymentList:
    with db.session() as session:
        rows = deployments.list_deployments(session, scope.project_id)
        return DeploymentList(deployments=[_dto(request, r) for r in rows])


@router.post(
    "/v1/endpoints", status_code=201, response_model=DeploymentEnvelope,
    responses=error_responses(400, 401, 403, 404, 409, 426),
    summary="Create a deployment (publish a target at <slug>)",
)
def create_endpoint(body: CreateDeploymentBody, request: Request, db: DatabaseDep,
                    scope: ProjectScopeDep, settings: SettingsDep) -> DeploymentEnvelope:
    mode, days = body.retention()
    grace_days = settings.slug_grace_days
    with db.session() as session:
        target = resolve_target(session, settings.registry, scope, body.target)
        quotas.check_new_deployment(session, settings, scope.org_id)
        expires_at = expiry(session, settings, scope, body.expires_at)
        try:
            row = deployments.create_deployment(
                session, org_id=scope.org_id, project_id=scope.project_id, slug=body.slug,
                target=target, auth_mode=body.auth_mode, run_retention_mode=mode,
                run_retention_days=days, grace=timedelta(days=grace_days),
                expires_at=expires_at,
            )
        except SlugTaken as exc:
            raise ApiError(409, "Deployment slug is already taken") from exc
        except SlugHeld as exc:
            raise ApiError(409, f"Deployment slug {body.slug!r} was recently released by "
                                "another project and stays reserved to it for up to "
                                f"{grace_days} days; pick another slug") from exc
        return DeploymentEnvelope(deployment=_dto(request, row))


@router.get(
    "/v1/endpoints/{deployment_id}", response_model=DeploymentEnvelope, responses=SCOPED,
    summary="Get one deployment",
)
def get_endpoint(deployment_id: str, request: Request, db: DatabaseDep,
                 scope: ProjectScopeDep) -> DeploymentEnvelope:
    with db.session() as session:
        row = _get_or_404(session, scope, deployment_id)
        return DeploymentEnvelope(deployment=_dto(request, row))


@router.patch(
    "/v1/endpoints/{deployment_id}", response_model=DeploymentEnvelope, responses=SCOPED,
    summary="Update target, auth mode, enabled, retention or rate limits (slug is immutable)",
)
def update_endpoint(
    deployment_id: str,
    body: UpdateDeploymentBody,
    request: Request,
    db: DatabaseDep,
    scope: ProjectScopeDep,
    settings: SettingsDep,
) -> DeploymentEnvelope:
    with db.session() as session:
        row = _get_or_404(session, scope, deployment_id)
        changes: dict[str, object] = {}
        if body.target is not None:
            changes["target"] = resolve_target(
                session, settings.registry, scope, body.target
            )
        if body.auth_mode is not None:
            changes["auth_mode"] = body.auth_mode
        if body.enabled is not None:
            changes["enabled"] = body.enabled
        if "expires_at" in body.model_fields_set:
            if body.expires_at is None and capped(session, settings, scope):
                raise ApiError(400, "expiresAt cannot be removed: an anonymous identity's "
                                    "deployments expire within "
                                    f"{settings.anonymous_deployment_days} days "
                                    "(ARKOR_ANONYMOUS_DEPLOYMENT_DAYS); set a time instead")
            changes["expires_at"] = expiry(session, settings, scope, body.expires_at)
        try:
            retention = body.retention_change(row.run_retention_mode, row.run_retention_days)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        if retention is not None:
            changes["run_retention_mode"], changes["run_retention_days"] = retention
        if body.limits is not None:
            changes.update(body.limits.changes())
        if changes:
            deployments.update_deployment(session, row, changes)
        return DeploymentEnvelope(deployment=_dto(request, row))


@router.delete(
    "/v1/endpoints/{deployment_id}", status_code=204, response_class=Response,
    responses=SCOPED, summary="Delete a deployment and its keys (its slug stays reserved to "
                              "this project for a grace period)",
)
def delete_endpoint(deployment_id: str, db: DatabaseDep, scope: ProjectScopeDep,
                    settings: SettingsDep) -> Response:
    grace = timedelta(days=settings.slug_grace_days)
    with db.session() as session:
        deployments.delete_deployment(session, _get_or_404(session, scope, deployment_id),
                                      grace=grace)
    return Response(status_code=204)


@router.get(
    "/v1/endpoints/{deployment_id}/keys", response_model=KeyList, responses=SCOPED,
    summary="List a deployment's API keys (never their plaintext)",
)
def list_endpoint_keys(deployment_id: str, db: DatabaseDep, scope: ProjectScopeDep) -> KeyList:
    with db.session() as session:
        row = _get_or_404(session, scope, deployment_id)
        return KeyList(keys=[key_dto(k) for k in deployment_keys.list_keys(session, row.id)])


@router.post(
    "/v1/endpoints/{deployment_id}/keys", status_code=201, response_model=KeyEnvelope,
    responses=SCOPED, summary="Issue an API key; its plaintext is returned this once",
)
def create_endpoint_key(deployment_id: str, body: CreateKeyBody, db: DatabaseDep,
                        scope: ProjectScopeDep, settings: SettingsDep) -> KeyEnvelope:
    with db.session() as session:
        row = _get_or_404(session, scope, deployment_id)
        quotas.check_new_key(session, settings, scope.org_id, row.id)
        key, plaintext = deployment_keys.create_key(session, deployment_id=row.id, label=body.label)
        return KeyEnvelope(key=created_key_dto(key, plaintext))


@router.patch(
    "/v1/endpoints/{deployment_id}/keys/{key_id}", response_model=UpdatedKeyEnvelope,
    responses=SCOPED, summary="Set a key's rate limits (null lifts one)",
)
def update_endpoint_key(deployment_id: str, key_id: str, body: UpdateKeyBody,
                        db: DatabaseDep, scope: ProjectScopeDep) -> UpdatedKeyEnvelope:
    with db.session() as session:
        row = _get_or_404(session, scope, deployment_id)
        key = deployment_keys.get_key(session, row.id, key_id)
        if key is None:
            raise ApiError(404, f"Key {key_id!r} not found on this deployment")
        deployment_keys.set_limits(session, key, body.limits.changes())
        return UpdatedKeyEnvelope(key=key_dto(key))


@router.delete(
    "/v1/endpoints/{deployment_id}/keys/{key_id}", status_code=204, response_class=Response,
    responses=SCOPED, summary="Revoke a key (it stays listed, disabled)",
)
def revoke_endpoint_key(deployment_id: str, key_id: str, db: DatabaseDep,
                        scope: ProjectScopeDep) -> Response:
    with db.session() as session:
        row = _get_or_404(session, scope, deployment_id)
        key = deployment_keys.get_key(session, row.id, key_id)
        if key is None:
            raise ApiError(404, f"Key {key_id!r} not found on this deployment")
        deployment_keys.revoke_key(session, key)
    return Response(status_code=204)
