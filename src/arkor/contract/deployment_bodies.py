"""Request bodies of the deployments routes: strict models that carry the contract's messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from arkor.contract.deployments import (
    DAYS_MODE_NEEDS_DAYS,
    DAYS_ONLY_WITH_DAYS_MODE,
    DEFAULT_AUTH_MODE,
    DEFAULT_RETENTION,
    KEY_LABEL_MAX,
    KEY_LABEL_MESSAGE,
    MAX_CONCURRENT_REQUESTS,
    MAX_REQUESTS_PER_MINUTE,
    MAX_RETENTION_DAYS,
    MAX_TOKENS_PER_MINUTE,
    RETENTION_DAYS,
    AuthMode,
    RunRetentionMode,
    check_deployment_slug,
)


class Body(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", strict=True
    )


class FinalAdapterIn(Body):
    kind: Literal["final"]
    job_id: str = Field(min_length=1, max_length=64)


class CheckpointAdapterIn(Body):
    kind: Literal["checkpoint"]
    job_id: str = Field(min_length=1, max_length=64)
    step: int = Field(ge=0)


class AdapterTargetIn(Body):
    kind: Literal["adapter"]
    adapter: Annotated[FinalAdapterIn | CheckpointAdapterIn, Field(discriminator="kind")]


class BaseModelTargetIn(Body):
    kind: Literal["base_model"]
    base_model: str = Field(min_length=1, max_length=200)


class ModelMenuTargetIn(Body):
    """The operator's menu of public base models; the menu itself is the server's, so the
    kind is all there is to say (fields a client read from a deployment are ignored)."""

    kind: Literal["model_menu"]


TargetIn = Annotated[AdapterTargetIn | BaseModelTargetIn | ModelMenuTargetIn,
                     Field(discriminator="kind")]


class LimitsIn(Body):
    """Rate limits to change: a field given is set (null lifts that limit), one omitted
    keeps its value."""

    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_REQUESTS_PER_MINUTE)
    tokens_per_minute: int | None = Field(default=None, ge=1, le=MAX_TOKENS_PER_MINUTE)
    concurrent_requests: int | None = Field(default=None, ge=1, le=MAX_CONCURRENT_REQUESTS)

    def changes(self) -> dict[str, int | None]:
        """``{column: value}`` of the fields given (snake_case, as the tables name them)."""
        return {name: getattr(self, name) for name in self.model_fields_set
                if name in type(self).model_fields}


def future_utc(value: datetime | None) -> datetime | None:
    """An expiry in UTC (a time without a zone is UTC); it must be in the future."""
    if value is None:
        return None
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if value <= datetime.now(UTC):
        raise ValueError("expiresAt must be in the future")
    return value


class CreateDeploymentBody(Body):
    slug: str = Field(description="2-50 chars of [a-z0-9-]; not a reserved label")
    target: TargetIn
    auth_mode: AuthMode = DEFAULT_AUTH_MODE
    run_retention_mode: RunRetentionMode | None = None
    run_retention_days: int | None = Field(default=None, ge=1, le=MAX_RETENTION_DAYS)
    expires_at: datetime | None = Field(
        default=None, strict=False,  # an ISO string on the wire
        description="ISO time after which the deployment answers 404 and is deleted; a time "
                    "without a zone is UTC")

    @field_validator("expires_at")
    @classmethod
    def _expiry(cls, value: datetime | None) -> datetime | None:
        return future_utc(value)

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        return check_deployment_slug(value)

    @model_validator(mode="after")
    def _retention(self) -> CreateDeploymentBody:
        mode, days = self.run_retention_mode, self.run_retention_days
        if days is not None and mode != RETENTION_DAYS:
            raise ValueError(DAYS_ONLY_WITH_DAYS_MODE)
        if mode == RETENTION_DAYS and days is None:
            raise ValueError(DAYS_MODE_NEEDS_DAYS)
        return self

    def retention(self) -> tuple[str, int | None]:
        if self.run_retention_mode is None:
            return DEFAULT_RETENTION
        return self.run_retention_mode, self.run_retention_days


class UpdateDeploymentBody(Body):
    """Partial update: omitted fields stay as they are; ``slug`` cannot change."""

    target: TargetIn | None = None
    auth_mode: AuthMode | None = None
    enabled: bool | None = None
    run_retention_mode: RunRetentionMode | None = None
    run_retention_days: int | None = Field(default=None, ge=1, le=MAX_RETENTION_DAYS)
    limits: LimitsIn | None = None
    expires_at: datetime | None = Field(
        default=None, strict=False,  # an ISO string on the wire
        description="A new expiry (ISO time); null removes it")

    @field_validator("expires_at")
    @classmethod
    def _expiry(cls, value: datetime | None) -> datetime | None:
        return future_utc(value)

    @model_validator(mode="before")
    @classmethod
    def _immutable_slug(cls, data: Any) -> Any:
        if isinstance(data, dict) and "slug" in data:
            raise ValueError(
                "slug is immutable; create a new deployment to use a different slug"
            )
        return data

    @model_validator(mode="after")
    def _no_nulls(self) -> UpdateDeploymentBody:
        for name in ("target", "auth_mode", "enabled", "run_retention_mode", "limits"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{to_camel(name)} cannot be null; omit it to keep the value")
        return self

    def retention_change(
        self, current_mode: str, current_days: int | None
    ) -> tuple[str, int | None] | None:
        """The new ``(mode, days)``, None when untouched; ValueError on a bad combination."""
        mode_set = self.run_retention_mode is not None
        days_set = "run_retention_days" in self.model_fields_set
        if not mode_set and not days_set:
            return None
        mode = self.run_retention_mode or current_mode
        days = self.run_retention_days if days_set else None
        if mode == RETENTION_DAYS:
            if days is None and not days_set and current_mode == RETENTION_DAYS:
                days = current_days
            if days is None:
                raise ValueError(DAYS_MODE_NEEDS_DAYS)
            return mode, days
        if days is not None:
            raise ValueError(DAYS_ONLY_WITH_DAYS_MODE)
        return mode, None


class CreateKeyBody(Body):
    label: str = Field(description=f"1-{KEY_LABEL_MAX} characters after trimming")

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        value = value.strip()
        if not 1 <= len(value) <= KEY_LABEL_MAX:
            raise ValueError(KEY_LABEL_MESSAGE)
        return value


class UpdateKeyBody(Body):
    """``PATCH /v1/endpoints/{id}/keys/{keyId}``: the key's rate limits."""

    limits: LimitsIn
