"""Rows to wire DTOs (the SDK's models), so server and client share one contract."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from arkor.cloud import run_export
from arkor.contract import models as m
from arkor.contract.deployments import (
    ADAPTER_CHECKPOINT,
    TARGET_ADAPTER,
    TARGET_BASE_MODEL,
    TARGET_MODEL_MENU,
)
from arkor.contract.domains import DOMAIN_PENDING, DOMAIN_VERIFIED, challenge_record
from arkor.store import tables


def as_utc(moment: datetime) -> datetime:
    """A query's time in UTC; one written without a zone is read as UTC."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def org_dto(org: tables.Org) -> m.Org:
    return m.Org(id=org.id, slug=org.slug, name=org.name)


def project_dto(project: tables.Project) -> m.Project:
    return m.Project(
        id=project.id,
        slug=project.slug,
        name=project.name,
        org_id=project.org_id,
        created_at=iso(project.created_at),
    )


def target_dto(row: tables.Deployment, menu: tuple[str, ...] = ()
               ) -> m.AdapterTarget | m.BaseModelTarget | m.ModelMenuTarget | m.UnknownTarget:
    if row.target_kind == TARGET_BASE_MODEL:
        return m.BaseModelTarget(base_model=row.base_model or "")
    if row.target_kind == TARGET_MODEL_MENU:
        return m.ModelMenuTarget(models=list(menu), default_model=menu[0] if menu else None)
    if row.target_kind != TARGET_ADAPTER:  # written by a newer server sharing the database
        return m.UnknownTarget(kind=row.target_kind)
    if row.adapter_kind == ADAPTER_CHECKPOINT:
        adapter: m.FinalAdapter | m.CheckpointAdapter = m.CheckpointAdapter(
            job_id=row.job_id or "", step=row.checkpoint_step or 0
        )
    else:
        adapter = m.FinalAdapter(job_id=row.job_id or "")
    return m.AdapterTarget(adapter=adapter)


def limits_dto(row: tables.Deployment | tables.DeploymentKey) -> m.RateLimits:
    return m.RateLimits(requests_per_minute=row.requests_per_minute,
                        tokens_per_minute=row.tokens_per_minute,
                        concurrent_requests=row.concurrent_requests)


def deployment_dto(row: tables.Deployment, base_url: str | None = None,
                   menu: tuple[str, ...] = ()) -> m.Deployment:
    """``menu``: the operator's public models, which a ``model_menu`` target shows."""
    return m.Deployment(
        url=f"{base_url}/chat/completions" if base_url else None,
        base_url=base_url,
        id=row.id,
        slug=row.slug,
        org_id=row.org_id,
        project_id=row.project_id,
        target=target_dto(row, menu),
        auth_mode=row.auth_mode,  # type: ignore[arg-type]
        url_format="openai_compat",
        enabled=row.enabled,
        custom_domain=row.custom_domain,
        run_retention_mode=row.run_retention_mode,
        run_retention_days=row.run_retention_days,
        limits=limits_dto(row),
        expires_at=iso(row.expires_at),
        created_at=iso(row.created_at) or "",
        updated_at=iso(row.updated_at) or "",
    )


def key_dto(row: tables.DeploymentKey) -> m.DeploymentKey:
    return m.DeploymentKey(
        id=row.id,
        label=row.label,
        prefix=row.prefix,
        enabled=row.enabled,
        created_at=iso(row.created_at) or "",
        last_used_at=iso(row.last_used_at),
        limits=limits_dto(row),
    )


def created_key_dto(row: tables.DeploymentKey, plaintext: str) -> m.CreatedDeploymentKey:
    return m.CreatedDeploymentKey(
        id=row.id,
        label=row.label,
        plaintext=plaintext,
        prefix=row.prefix,
        created_at=iso(row.created_at) or "",
    )


def job_dto(row: tables.Job, checkpoints: list[tables.Checkpoint]) -> m.TrainingJob:
    return m.TrainingJob(
        id=row.id,
        org_id=row.org_id,
        project_id=row.project_id,
        name=row.name,
        status=row.status,  # type: ignore[arg-type]
        config=row.config,
        error=row.error,
        created_at=iso(row.created_at) or "",
        started_at=iso(row.started_at),
        completed_at=iso(row.completed_at),
        checkpoints=[
            m.JobCheckpoint(step=c.step, created_at=iso(c.created_at) or "") for c in checkpoints
        ],
        has_final_adapter=row.status == "completed",
    )


def dataset_dto(row: tables.Dataset) -> m.UploadedDataset:
    return m.UploadedDataset(
        id=row.id,
        name=row.name,
        num_examples=row.num_examples,
        size_bytes=row.size_bytes,
        created_at=iso(row.created_at) or "",
    )


def role_dto(role: str) -> m.OrgRole:
    for known in m.ORG_ROLES:
        if role == known:
            return known
    raise ValueError(f"unknown role {role!r} in the database")


def user_dto(user: tables.User) -> m.User:
    return m.User(id=user.id, email=user.email, anonymous=user.anonymous, name=user.name,
                  admin=user.admin)


def admin_user_dto(user: tables.User) -> m.AdminUser:
    return m.AdminUser(id=user.id, email=user.email, name=user.name, anonymous=user.anonymous,
                       admin=user.admin, disabled=user.disabled,
                       created_at=iso(user.created_at) or "")


def token_dto(row: tables.AccessToken, *, current_id: str | None = None) -> m.AccessToken:
    return m.AccessToken(
        id=row.id, name=row.name or f"{row.kind} sign-in", kind=row.kind, prefix=row.prefix,
        expires_at=iso(row.expires_at), created_at=iso(row.created_at) or "",
        last_used_at=iso(row.last_used_at), current=row.id == current_id,
    )


def created_token_dto(row: tables.AccessToken, plaintext: str) -> m.CreatedAccessToken:
    return m.CreatedAccessToken(
        id=row.id, name=row.name or "", prefix=row.prefix or "", plaintext=plaintext,
        expires_at=iso(row.expires_at), created_at=iso(row.created_at) or "",
        last_used_at=iso(row.last_used_at),
    )


def run_dto(row: tables.Run, *, whole: bool = False) -> m.RunSummary:
    """A stored run; with ``whole``, its request and answer too."""
    request = json.loads(row.request_json)
    response = json.loads(row.response_json) if row.response_json else None
    fields: dict[str, Any] = dict(
        id=row.id, deployment_id=row.deployment_id, route=row.route, status=row.status,
        error=row.error, http_status=row.http_status, request_id=row.request_id,
        key_id=row.key_id, key_prefix=row.key_prefix, base_model=row.base_model,
        adapter=row.adapter, stream=row.stream,
        usage=m.RunUsage(prompt_tokens=row.prompt_tokens,
                         completion_tokens=row.completion_tokens),
        ttft_ms=row.ttft_ms, latency_ms=row.latency_ms, mark=row.mark,
        prompt_preview=run_export.prompt_preview(row.route, request),
        answer_preview=run_export.answer_preview(row.route, response),
        created_at=iso(row.created_at) or "",
    )
    if whole:
        return m.Run(**fields, request=request, response=response)
    return m.RunSummary(**fields)


def domain_dto(row: tables.CustomDomain) -> m.CustomDomain:
    return m.CustomDomain(
        domain=row.domain, deployment_id=row.deployment_id,
        status=DOMAIN_VERIFIED if row.verified_at is not None else DOMAIN_PENDING,
        challenge_record=challenge_record(row.domain), challenge_value=row.token,
        created_at=iso(row.created_at) or "", verified_at=iso(row.verified_at),
        last_checked_at=iso(row.last_checked_at), last_error=row.last_error,
    )
