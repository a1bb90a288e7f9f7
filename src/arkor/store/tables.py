"""The database schema. Alembic migrations in ``migrations/versions`` create exactly this.

Identifiers are UUID strings; times are stored as UTC. Secrets (access tokens, deployment
keys) are stored only as SHA-256 hex digests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from arkor.contract.models import ROLE_OWNER

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, whatever the database keeps (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    """A person (or an anonymous sign-in). A disabled user's tokens stop working at once;
    ``admin`` may use ``/v1/admin/*``. Emails are unique (compared as given, lower-cased)."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True, index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Org(Base):
    __tablename__ = "orgs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), default=ROLE_OWNER)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AccessToken(Base):
    """A bearer token: an anonymous sign-in's (``kind`` cli/web) or a personal access token
    (``pat``). Valid while not revoked, not past ``expires_at`` and its user not disabled;
    checked in the database on every request, so every process sees a revocation at once."""

    __tablename__ = "access_tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str | None] = mapped_column(String(80))
    prefix: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Invite(Base):
    """A one-time code that creates a user in ``org_id`` with ``role``; only its digest is
    kept. Spent by setting ``used_at`` (once: the update checks it is still unset)."""

    __tablename__ = "invites"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("org_id", "slug", name="uq_projects_org_id_slug"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    """A fine-tuning job (trained here or imported); deployments target its adapters."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # Directory holding checkpoints/ and final/; never sent over the wire.
    artifacts_dir: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The supervisor (one server process) that started it: while that one beats, no other
    # server takes the job for an orphan.
    supervisor_id: Mapped[str | None] = mapped_column(String(32))

    # The status is the row's version: every UPDATE of a job says `WHERE status = <the status
    # it was read with>`, so two writers racing for one job (a cancel and the dispatcher
    # starting it, a runner finishing, two servers' dispatchers) cannot both win. The loser's
    # flush raises StaleDataError and its transaction rolls back (:func:`jobs.set_status`).
    # (ClassVar is what ruff asks for; SQLAlchemy's declarative base types it as an instance
    # attribute, which mypy will not let a ClassVar override.)
    __mapper_args__ = {"version_id_col": status, "version_id_generator": False}  # noqa: RUF012


class Supervisor(Base):
    """A server process's job supervisor, alive while it beats: ``seen_at`` is written with
    the database's clock every few seconds, so servers' own clocks need not agree."""

    __tablename__ = "supervisors"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobEvent(Base):
    """One event of a job, in order. ``id`` is the SSE event id (monotonic per database)."""

    __tablename__ = "job_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Dataset(Base):
    """A JSONL dataset uploaded to the server (validated before it is kept)."""

    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    num_examples: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step", name="uq_checkpoints_job_id_step"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Deployment(Base):
    """A published URL. ``slug`` is globally unique: it is the subdomain."""

    __tablename__ = "deployments"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    target_kind: Mapped[str] = mapped_column(String(20))
    adapter_kind: Mapped[str | None] = mapped_column(String(20))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="RESTRICT"))
    checkpoint_step: Mapped[int | None] = mapped_column(Integer)
    base_model: Mapped[str | None] = mapped_column(String(200))
    auth_mode: Mapped[str] = mapped_column(String(20))
    url_format: Mapped[str] = mapped_column(String(20), default="openai_compat")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    custom_domain: Mapped[str | None] = mapped_column(String(253))
    run_retention_mode: Mapped[str] = mapped_column(String(20), default="days")
    run_retention_days: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Rate limits (arkor.edge.rate_limits); NULL is unlimited.
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)
    concurrent_requests: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Run(Base):
    """One call a deployment served (the edge's chat completions, completions or responses),
    kept by the deployment's run retention: the request, the answer, the usage and timing,
    which key (id and prefix, never the key) and which target. ``mark`` is a person's
    good/bad; ``stored``/``metadata_json`` are OpenAI's stored-completion fields."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_deployment_created", "deployment_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(String(36))
    route: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    http_status: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str] = mapped_column(String(200))
    response_id: Mapped[str | None] = mapped_column(String(80), index=True)
    key_id: Mapped[str | None] = mapped_column(String(36), index=True)
    key_prefix: Mapped[str | None] = mapped_column(String(17))
    base_model: Mapped[str] = mapped_column(String(200))
    adapter: Mapped[str | None] = mapped_column(String(300))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    request_json: Mapped[str] = mapped_column(Text)
    response_json: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    mark: Mapped[str | None] = mapped_column(String(10))
    stored: Mapped[bool] = mapped_column(Boolean, default=False)
    metadata_json: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsageCounters:
    """An hour's counters, shared by the deployments' and the inference route's buckets."""

    requests: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    errors_4xx: Mapped[int] = mapped_column(Integer, default=0)
    errors_5xx: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms_sum: Mapped[int] = mapped_column(Integer, default=0)
    latency_histogram: Mapped[str] = mapped_column(Text, default="[]")


class UsageBucket(UsageCounters, Base):
    """One hour of one deployment's calls through one key (``key_id`` "" without a key):
    counts, the engine's token counts, errors, and a latency histogram (counts per
    :data:`arkor.store.usage.LATENCY_BOUNDS_MS` bucket, JSON). Kept whatever the run retention."""

    __tablename__ = "usage_buckets"
    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    project_id: Mapped[str] = mapped_column(String(36), index=True)


class InferenceUsageBucket(UsageCounters, Base):
    """One hour of a project's calls to the control plane's ``/v1/inference/chat`` (no
    deployment, no key): the same counters as :class:`UsageBucket`."""

    __tablename__ = "inference_usage_buckets"
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)


class ReleasedSlug(Base):
    """A deleted deployment's slug, kept for its project for a grace period so that nobody
    else receives the traffic still sent to it (``ARKOR_SLUG_GRACE_DAYS``)."""

    __tablename__ = "released_slugs"
    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    released_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeploymentKey(Base):
    __tablename__ = "deployment_keys"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(80))
    prefix: Mapped[str] = mapped_column(String(17))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)
    concurrent_requests: Mapped[int | None] = mapped_column(Integer)


class CustomDomain(Base):
    """A custom domain of a deployment (``domain`` is globally unique: it is a Host). Served
    only while ``verified_at`` is set, by a TXT record ``_arkor-challenge.<domain>`` holding
    ``token``; ``deployments.custom_domain`` mirrors the earliest verified one."""

    __tablename__ = "custom_domains"
    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    last_error: Mapped[str | None] = mapped_column(String(500))


class RateLimitWindow(Base):
    """One rate-limit window of one bucket (a deployment's or a key's limits): the requests
    admitted in it and the tokens charged to it. ``window_start`` is in seconds since the
    epoch; windows a few lengths old are swept."""

    __tablename__ = "rate_limit_windows"
    bucket: Mapped[str] = mapped_column(String(120), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class RateLimitLease(Base):
    """A call in progress holding one of a bucket's concurrent-request slots until it ends or
    ``expires_at`` (milliseconds since the epoch) passes: the process serving it renews it
    while the call lasts, so a process that dies frees its slots within one lease."""

    __tablename__ = "rate_limit_leases"
    bucket: Mapped[str] = mapped_column(String(120), primary_key=True)
    lease: Mapped[str] = mapped_column(String(40), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger)
