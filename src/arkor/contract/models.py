"""Typed models for every DTO of the cloud API: the server answers with them, the SDK parses them.

camelCase on the wire, snake_case in Python. Responses are parsed loosely: unknown extra
fields are kept (``model_extra``), so a newer server never breaks an older SDK.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag
from pydantic.alias_generators import to_camel

from arkor.contract.deployments import (
    ADAPTER_CHECKPOINT,
    ADAPTER_FINAL,
    TARGET_ADAPTER,
    TARGET_BASE_MODEL,
    TARGET_MODEL_MENU,
    AuthMode,
)
from arkor.contract.domains import DomainStatus

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]

# Who may create an identity on a server (``ARKOR_SIGNUP``).
SignupPolicy = Literal["anonymous", "invite", "disabled"]
SIGNUP_POLICIES: Final[tuple[SignupPolicy, ...]] = get_args(SignupPolicy)
SIGNUP_ANONYMOUS, SIGNUP_INVITE, SIGNUP_DISABLED = SIGNUP_POLICIES

# A member's role in an org.
OrgRole = Literal["owner", "member", "viewer"]
ORG_ROLES: Final[tuple[OrgRole, ...]] = get_args(OrgRole)
ROLE_OWNER, ROLE_MEMBER, ROLE_VIEWER = ORG_ROLES

TOKEN_NAME_MAX = 80
MAX_TOKEN_DAYS = 3650
TokenName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                             max_length=TOKEN_NAME_MAX)]
ExpiryDays = Annotated[int, Field(ge=1, le=MAX_TOKEN_DAYS)]
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"
Email = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320,
                                         pattern=EMAIL_PATTERN)]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                               max_length=200)]


class WireModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)


class Org(WireModel):
    id: str
    slug: str
    name: str


class User(WireModel):
    id: str
    email: str | None = None
    anonymous: bool = False
    name: str | None = None
    admin: bool = False


class OrgUsage(WireModel):
    """What an org holds now, against the server's :class:`Quotas`."""

    deployments: int
    datasets: int
    dataset_bytes: int
    queued_jobs: int
    running_jobs: int


class MemberOrg(Org):
    """An org in ``GET /v1/me``: the caller's ``role`` in it (None from servers before roles)
    and its ``usage`` (None from servers before quotas)."""

    role: OrgRole | None = None
    usage: OrgUsage | None = None


class Quotas(WireModel):
    """The server's limits per org (``ARKOR_QUOTA_*``); None is no limit."""

    deployments: int | None
    keys_per_deployment: int | None
    datasets: int | None
    dataset_bytes: int | None
    queued_jobs: int | None
    running_jobs: int | None
    job_steps: int | None
    job_epochs: int | None
    job_batch_size: int | None
    job_wall_seconds: int | None


class Me(WireModel):
    user: User
    orgs: list[MemberOrg]
    quotas: Quotas | None = None


class AnonymousSession(WireModel):
    token: str
    anonymous_id: str
    kind: Literal["cli", "web"]
    personal_org: Org


class CliAuthConfig(WireModel):
    auth0_domain: str | None = None
    client_id: str | None = None
    audience: str | None = None
    callback_ports: list[int] = Field(default_factory=list)
    # Open on read (a newer server may add policies); None from servers before sign-up control.
    signup: str | None = None

    @property
    def oauth_available(self) -> bool:
        return bool(self.auth0_domain and self.client_id and self.audience)


class AccessToken(WireModel):
    """A bearer token of the calling user, as listed: never its plaintext."""

    id: str
    name: str
    kind: str
    prefix: str | None = None
    expires_at: str | None = None
    created_at: str
    last_used_at: str | None = None
    current: bool = False


class CreatedAccessToken(WireModel):
    """The result of creating a token: the only object that ever carries ``plaintext``."""

    id: str
    name: str
    prefix: str
    plaintext: str = Field(repr=False)
    expires_at: str | None = None
    created_at: str
    last_used_at: str | None = None


class InviteSession(WireModel):
    """A new user created by accepting an invite, with their first token."""

    token: CreatedAccessToken
    user: User
    org: Org
    role: OrgRole


class AdminUser(WireModel):
    id: str
    email: str | None = None
    name: str | None = None
    anonymous: bool = False
    admin: bool = False
    disabled: bool = False
    created_at: str


class CreatedUser(WireModel):
    user: AdminUser
    token: CreatedAccessToken
    org: Org | None = None


class CreatedInvite(WireModel):
    """An invite: ``code`` is shown this once (only its digest is kept)."""

    id: str
    org: Org
    role: OrgRole
    code: str = Field(repr=False)
    expires_at: str
    created_at: str


class _Body(BaseModel):
    """A request body: camelCase on the wire, strict types, unknown fields ignored (like the
    other routes' bodies)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow",
                              strict=True, frozen=True)


class CreateTokenBody(_Body):
    name: TokenName
    expires_in_days: ExpiryDays | None = None


class AcceptInviteBody(_Body):
    code: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(repr=False)
    email: Email | None = None
    name: DisplayName | None = None


class CreateUserBody(_Body):
    email: Email
    name: DisplayName | None = None
    admin: bool = False
    org_slug: str | None = None
    role: OrgRole = "member"


class CreateInviteBody(_Body):
    org_slug: str
    role: OrgRole = "member"
    expires_in_days: ExpiryDays | None = None


class OrgMember(WireModel):
    """A member of an org and their role."""

    user_id: str
    email: str | None = None
    name: str | None = None
    anonymous: bool = False
    role: OrgRole
    created_at: str


class MemberEnvelope(WireModel):
    member: OrgMember


class MemberList(WireModel):
    org: Org
    members: list[OrgMember]


class AddMemberBody(_Body):
    email: Email
    role: OrgRole = "member"


class SetRoleBody(_Body):
    role: OrgRole


class Project(WireModel):
    id: str
    slug: str
    name: str
    org_id: str
    created_at: str | None = None


class ProjectList(WireModel):
    org: Org
    projects: list[Project]


class FinalAdapter(WireModel):
    kind: Literal["final"] = ADAPTER_FINAL
    job_id: str


class CheckpointAdapter(WireModel):
    kind: Literal["checkpoint"] = ADAPTER_CHECKPOINT
    job_id: str
    step: int


AdapterSpec = Annotated[FinalAdapter | CheckpointAdapter, Field(discriminator="kind")]


class AdapterTarget(WireModel):
    kind: Literal["adapter"] = TARGET_ADAPTER
    adapter: AdapterSpec


class BaseModelTarget(WireModel):
    kind: Literal["base_model"] = TARGET_BASE_MODEL
    base_model: str


class ModelMenuTarget(WireModel):
    """Every base model the operator made public, one URL: the request's ``model`` picks one,
    and a request without one gets ``default_model``. The server fills ``models`` and
    ``default_model`` when it answers; a create or update sends only the kind."""

    kind: Literal["model_menu"] = TARGET_MODEL_MENU
    models: list[str] | None = None
    default_model: str | None = None


KNOWN_TARGETS: Final = (TARGET_ADAPTER, TARGET_BASE_MODEL, TARGET_MODEL_MENU)


class UnknownTarget(WireModel):
    """A target kind this version does not know (a newer server's): kept as sent, with its
    fields in ``model_extra``, so one such deployment never breaks a whole list. Its schema
    says "none of the known kinds", so a known target matches exactly one of the union."""

    kind: str = Field(json_schema_extra={"not": {"enum": list(KNOWN_TARGETS)}})


def _target_tag(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if kind in KNOWN_TARGETS else "unknown"


DeploymentTarget = Annotated[
    Annotated[AdapterTarget, Tag(TARGET_ADAPTER)]
    | Annotated[BaseModelTarget, Tag(TARGET_BASE_MODEL)]
    | Annotated[ModelMenuTarget, Tag(TARGET_MODEL_MENU)]
    | Annotated[UnknownTarget, Tag("unknown")],
    Discriminator(_target_tag),
]


class RateLimits(WireModel):
    """A deployment's or a key's rate limits; None is unlimited. A call must be within both
    its deployment's and its key's."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None


class Deployment(WireModel):
    id: str
    slug: str
    org_id: str
    project_id: str
    target: DeploymentTarget
    auth_mode: AuthMode
    url_format: Literal["openai_compat"] = "openai_compat"
    enabled: bool
    custom_domain: str | None = None
    # Open enum on read: a newer server may add modes.
    run_retention_mode: str | None = None
    run_retention_days: int | None = None
    limits: RateLimits = RateLimits()
    expires_at: str | None = None  # after it the edge answers 404 and a sweep deletes it
    created_at: str
    updated_at: str
    url: str | None = None
    base_url: str | None = None


class DeploymentKey(WireModel):
    id: str
    label: str
    prefix: str
    enabled: bool
    created_at: str
    last_used_at: str | None = None
    limits: RateLimits = RateLimits()


class CustomDomain(WireModel):
    """A custom domain of a deployment. The edge serves it only once ``status`` is
    ``verified``: a TXT record ``challenge_record`` holding ``challenge_value`` was found.
    ``last_error`` says why the latest check did not verify it (None after a success)."""

    domain: str
    deployment_id: str
    status: DomainStatus
    challenge_record: str
    challenge_value: str
    created_at: str
    verified_at: str | None = None
    last_checked_at: str | None = None
    last_error: str | None = None


RunStatus = Literal["completed", "failed", "cancelled"]
RunMark = Literal["good", "bad"]
RUN_STATUSES: Final[tuple[RunStatus, ...]] = get_args(RunStatus)
RUN_MARKS: Final[tuple[RunMark, ...]] = get_args(RunMark)


class RunUsage(WireModel):
    prompt_tokens: int
    completion_tokens: int


class RunSummary(WireModel):
    """A stored run in a list: what happened, without the request's and answer's bodies."""

    id: str
    deployment_id: str
    route: str
    status: RunStatus
    error: str | None
    http_status: int
    request_id: str
    key_id: str | None
    key_prefix: str | None
    base_model: str
    adapter: str | None
    stream: bool
    usage: RunUsage
    ttft_ms: int | None
    latency_ms: int
    mark: RunMark | None
    prompt_preview: str
    answer_preview: str
    created_at: str


class Run(RunSummary):
    """One call a deployment served, whole: ``request`` as sent (the key never is), and
    ``response`` as answered (a stream's assembled), or None when there was none."""

    request: dict[str, Any]
    response: dict[str, Any] | None


class RunPage(WireModel):
    """A page of runs, newest first; ``next_cursor`` fetches the next (None: the last)."""

    runs: list[RunSummary]
    next_cursor: str | None


class ExportedRuns(WireModel):
    """Runs as a chat dataset: ``jsonl`` has ``exported`` lines; ``skipped`` matching runs
    were not plain chat that completed."""

    jsonl: str
    exported: int
    skipped: int


class UsageBucketOut(WireModel):
    """One hour or day of calls (UTC ``start``); latencies in milliseconds, from a histogram
    (each the upper bound of its bucket), None without calls."""

    start: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    errors: dict[str, int]
    cancelled: int
    latency_ms_mean: float | None
    latency_ms_p50: int | None
    latency_ms_p95: int | None
    latency_ms_p99: int | None


class UsageReport(WireModel):
    granularity: Literal["hour", "day"]
    since: str
    until: str
    buckets: list[UsageBucketOut]
    total: UsageBucketOut


class DeploymentUsage(WireModel):
    """One deployment's calls over a project report's span."""

    deployment_id: str
    slug: str
    total: UsageBucketOut


class ProjectUsageReport(UsageReport):
    """A project's usage: ``buckets`` and ``total`` count every call, its deployments' and the
    control plane's ``/v1/inference/chat``; ``deployments`` (those called in the span) and
    ``inference`` add up to ``total``."""

    deployments: list[DeploymentUsage]
    inference: UsageBucketOut


class CreatedDeploymentKey(WireModel):
    """The result of issuing a key: the only object that ever carries ``plaintext``."""

    id: str
    label: str
    plaintext: str = Field(repr=False)
    prefix: str
    created_at: str


class BaseModelInfo(WireModel):
    name: str
    source: Literal["embedded", "directory", "upstream"] = "directory"
    public: bool = False  # on the menu a model_menu deployment serves


class JobCheckpoint(WireModel):
    step: int
    created_at: str


class TrainingJob(WireModel):
    id: str
    org_id: str
    project_id: str
    name: str
    status: JobStatus
    config: dict[str, Any]
    error: str | None = None
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None
    checkpoints: list[JobCheckpoint] = Field(default_factory=list)
    has_final_adapter: bool = False


class UploadedDataset(WireModel):
    id: str
    name: str
    num_examples: int
    size_bytes: int
    created_at: str


def target_from_wire(
    value: Any,
) -> AdapterTarget | BaseModelTarget | ModelMenuTarget | UnknownTarget:
    from pydantic import TypeAdapter

    return TypeAdapter(DeploymentTarget).validate_python(value)
