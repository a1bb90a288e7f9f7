"""``CloudApiClient`` (sync) and ``AsyncCloudApiClient``: the same methods, one sends with
``httpx.Client``, the other with ``httpx.AsyncClient``. Pass ``transport=`` to talk to an app
in-process (``httpx.ASGITransport``) or to a ``MockTransport`` in tests.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar, Unpack

import httpx

from arkor.contract import models as m
from arkor.contract.deployments import DEFAULT_AUTH_MODE
from arkor.contract.models import ROLE_MEMBER
from arkor.sdk._base import (
    DEFAULT_TIMEOUT,
    UNSET,
    BaseCloudApiClient,
    Call,
    InferenceOptions,
    LimitsLike,
    RunFilters,
    ScopeLike,
    map_transport_error,
    raise_for_response,
    read_adapter,
    read_dataset,
)
from arkor.sdk._credentials import AnyCredentials
from arkor.sdk._events import EventFollower, JobEvent, ReconnectPolicy
from arkor.sdk.pool import POOL_LIMITS

T = TypeVar("T")
Creds = AnyCredentials
PathOrBytes = str | os.PathLike[str] | bytes
AdapterLike = m.FinalAdapter | m.CheckpointAdapter | Mapping[str, Any]


class CloudApiClient(BaseCloudApiClient):
    def __init__(
        self,
        *,
        base_url: str,
        credentials: Creds | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url=base_url, credentials=credentials, token=token, timeout=timeout)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  limits=POOL_LIMITS)

    def __enter__(self) -> CloudApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        try:
            response = self._http.request(**self._request(call))
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, self.base_url) from exc
        raise_for_response(response)
        return call.parse(response)

    def forward(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                json: Any = None, content: bytes | None = None,
                headers: Mapping[str, str] | None = None, stream: bool = False,
                raise_for_status: bool = False) -> httpx.Response:
        """Send any route with this client's headers and answer the raw response, whatever
        its status; ``raise_for_status=True`` raises the typed methods' errors instead.
        With ``stream=True`` the body is left unread: iterate it, then ``close()`` it."""
        request = self._http.build_request(
            **self._forward(method, path, params, json, content, headers, stream))
        try:
            response = self._http.send(request, stream=stream)
            if raise_for_status and not response.is_success:
                response.read()
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, self.base_url) from exc
        if raise_for_status:
            raise_for_response(response)
        return response

    def create_anonymous_session(self, *, kind: str = "cli") -> m.AnonymousSession:
        return self._send(self._create_anonymous_session(kind))

    def get_cli_auth_config(self) -> m.CliAuthConfig:
        return self._send(self._get_cli_auth_config())

    def get_me(self) -> m.Me:
        return self._send(self._get_me())

    def accept_invite(self, code: str, *, email: str | None = None,
                      name: str | None = None) -> m.InviteSession:
        """Sign up with an invite code: a new user in the invite's org. The answer's
        ``token.plaintext`` is the new user's token, shown this once."""
        return self._send(self._accept_invite(code, email, name))

    def create_access_token(self, *, name: str,
                            expires_in_days: int | None = None) -> m.CreatedAccessToken:
        """A personal access token for the caller. ``result.plaintext`` is shown this once."""
        return self._send(self._create_access_token(name, expires_in_days))

    def list_access_tokens(self) -> list[m.AccessToken]:
        """The caller's tokens that still work (``current`` marks the one in use)."""
        return self._send(self._list_access_tokens())

    def revoke_access_token(self, token_id: str) -> None:
        """Revoke one of the caller's tokens; it stops working on the next request."""
        self._send(self._revoke_access_token(token_id))

    def list_projects(self, org_slug: str) -> m.ProjectList:
        return self._send(self._list_projects(org_slug))

    def create_project(self, org_slug: str, *, name: str, slug: str) -> m.Project:
        return self._send(self._create_project(org_slug, name, slug))

    def list_members(self, org_slug: str) -> m.MemberList:
        """The org's members and their roles (any member may list them)."""
        return self._send(self._list_members(org_slug))

    def add_member(self, org_slug: str, *, email: str, role: str = ROLE_MEMBER) -> m.OrgMember:
        """Add an existing user to the org by email (owners only)."""
        return self._send(self._add_member(org_slug, email, role))

    def set_member_role(self, org_slug: str, user_id: str, *, role: str) -> m.OrgMember:
        """Change a member's role (owners only; the org keeps at least one owner)."""
        return self._send(self._set_member_role(org_slug, user_id, role))

    def remove_member(self, org_slug: str, user_id: str) -> None:
        """Remove a member from the org (owners only; the org keeps at least one owner)."""
        self._send(self._remove_member(org_slug, user_id))

    def list_base_models(self) -> list[m.BaseModelInfo]:
        return self._send(self._list_base_models())

    def list_deployments(self, scope: ScopeLike) -> list[m.Deployment]:
        return self._send(self._list_deployments(scope))

    def get_deployment(self, deployment_id: str, scope: ScopeLike) -> m.Deployment:
        return self._send(self._get_deployment(deployment_id, scope))

    def create_deployment(
        self,
        scope: ScopeLike,
        *,
        slug: str,
        target: m.AdapterTarget | m.BaseModelTarget | m.ModelMenuTarget | dict[str, Any],
        auth_mode: str = DEFAULT_AUTH_MODE,
        run_retention_mode: str | None = None,
        run_retention_days: int | None = None,
        expires_at: str | None = None,
    ) -> m.Deployment:
        return self._send(self._create_deployment(
            scope, slug, target, auth_mode, run_retention_mode, run_retention_days, expires_at
        ))

    def update_deployment(
        self,
        deployment_id: str,
        scope: ScopeLike,
        *,
        target: Any = UNSET,
        auth_mode: Any = UNSET,
        enabled: Any = UNSET,
        run_retention_mode: Any = UNSET,
        run_retention_days: Any = UNSET,
        limits: Any = UNSET,
        expires_at: Any = UNSET,
    ) -> m.Deployment:
        """Partial update: only the arguments you pass are sent. ``limits`` sets rate limits
        (``{"requests_per_minute": 60}``; None lifts one, a limit left out is kept);
        ``expires_at`` an ISO time, None to remove the expiry."""
        changes = {
            "target": target, "auth_mode": auth_mode, "enabled": enabled,
            "run_retention_mode": run_retention_mode, "run_retention_days": run_retention_days,
            "limits": limits, "expires_at": expires_at,
        }
        return self._send(self._update_deployment(deployment_id, scope, changes))

    def delete_deployment(self, deployment_id: str, scope: ScopeLike) -> None:
        self._send(self._delete_deployment(deployment_id, scope))

    def list_deployment_keys(
        self, deployment_id: str, scope: ScopeLike
    ) -> list[m.DeploymentKey]:
        return self._send(self._list_deployment_keys(deployment_id, scope))

    def create_deployment_key(
        self, deployment_id: str, scope: ScopeLike, *, label: str
    ) -> m.CreatedDeploymentKey:
        """Issue a key. ``result.plaintext`` is shown this once; store it now."""
        return self._send(self._create_deployment_key(deployment_id, scope, label))

    def update_deployment_key(
        self, deployment_id: str, key_id: str, scope: ScopeLike, *, limits: LimitsLike
    ) -> m.DeploymentKey:
        """Set a key's rate limits (None lifts one, a limit left out is kept)."""
        return self._send(self._update_deployment_key(deployment_id, key_id, scope, limits))

    def revoke_deployment_key(self, deployment_id: str, key_id: str, scope: ScopeLike) -> None:
        self._send(self._revoke_deployment_key(deployment_id, key_id, scope))

    def list_domains(self, deployment_id: str, scope: ScopeLike) -> list[m.CustomDomain]:
        """A deployment's custom domains, each with its status and TXT challenge."""
        return self._send(self._list_domains(deployment_id, scope))

    def add_domain(self, deployment_id: str, scope: ScopeLike, *,
                   domain: str) -> m.CustomDomain:
        """Add a custom domain, pending until a TXT record ``result.challenge_record`` holds
        ``result.challenge_value`` and :meth:`verify_domain` (or the periodic check) sees it."""
        return self._send(self._add_domain(deployment_id, scope, domain))

    def verify_domain(self, deployment_id: str, domain: str,
                      scope: ScopeLike) -> m.CustomDomain:
        """Look the TXT record up now; ``result.status`` says whether it verified."""
        return self._send(self._verify_domain(deployment_id, domain, scope))

    def remove_domain(self, deployment_id: str, domain: str, scope: ScopeLike) -> None:
        self._send(self._remove_domain(deployment_id, domain, scope))

    def upload_dataset(
        self, scope: ScopeLike, path_or_bytes: PathOrBytes, *, name: str | None = None
    ) -> m.UploadedDataset:
        """Upload a chat-format JSONL file; a file with problems raises ``BadRequestError``
        listing them by line number."""
        content, filename = read_dataset(path_or_bytes)
        return self._send(self._upload_dataset(scope, content, name or filename))

    def list_datasets(self, scope: ScopeLike) -> list[m.UploadedDataset]:
        return self._send(self._list_datasets(scope))

    def delete_dataset(self, dataset_id: str, scope: ScopeLike) -> None:
        """Delete an uploaded dataset (``ConflictError`` while a job that has not ended uses
        it)."""
        self._send(self._delete_dataset(dataset_id, scope))

    def list_runs(self, deployment_id: str, scope: ScopeLike, *,
                  filters: RunFilters | None = None, limit: int | None = None,
                  cursor: str | None = None) -> m.RunPage:
        """One page of a deployment's stored runs, newest first."""
        return self._send(self._list_runs(deployment_id, scope, filters or RunFilters(),
                                          limit, cursor))

    def iter_runs(self, deployment_id: str, scope: ScopeLike, *,
                  filters: RunFilters | None = None) -> Iterator[m.RunSummary]:
        """Every matching run, newest first, page after page."""
        cursor = None
        while True:
            page = self.list_runs(deployment_id, scope, filters=filters, cursor=cursor)
            yield from page.runs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get_run(self, deployment_id: str, run_id: str, scope: ScopeLike) -> m.Run:
        return self._send(self._get_run(deployment_id, run_id, scope))

    def mark_run(self, deployment_id: str, run_id: str, mark: str | None,
                 scope: ScopeLike) -> m.Run:
        """Mark a run ``"good"`` or ``"bad"`` (None clears it)."""
        return self._send(self._mark_run(deployment_id, run_id, mark, scope))

    def delete_run(self, deployment_id: str, run_id: str, scope: ScopeLike) -> None:
        self._send(self._delete_run(deployment_id, run_id, scope))

    def delete_runs(self, deployment_id: str, scope: ScopeLike) -> int:
        """Delete every stored run of the deployment; how many there were."""
        return self._send(self._delete_runs(deployment_id, scope))

    def get_usage(self, deployment_id: str, scope: ScopeLike, *, granularity: str = "hour",
                  since: str | None = None, until: str | None = None,
                  key_id: str | None = None) -> m.UsageReport:
        """A deployment's usage (one key's with ``key_id``) as hourly or daily buckets."""
        return self._send(self._usage(deployment_id, scope,
                                      granularity, since, until, key_id))

    def get_project_usage(self, scope: ScopeLike, *, granularity: str = "day",
                          since: str | None = None, until: str | None = None
                          ) -> m.ProjectUsageReport:
        """The project's usage: every deployment together and the control plane's inference
        route, with each deployment's total and the inference route's (``inference``)."""
        return self._send(self._project_usage(scope, granularity, since, until))

    def export_runs(self, deployment_id: str, scope: ScopeLike, *,
                    filters: RunFilters | None = None) -> m.ExportedRuns:
        """The completed plain-chat runs as a chat dataset (JSONL text)."""
        return self._send(self._export_runs(deployment_id, scope, filters or RunFilters()))

    def create_job(
        self, scope: ScopeLike, *, name: str, config: Mapping[str, Any]
    ) -> m.TrainingJob:
        return self._send(self._create_job(scope, name, config))

    def get_job(self, job_id: str, scope: ScopeLike) -> m.TrainingJob:
        return self._send(self._get_job(job_id, scope))

    def list_jobs(self, scope: ScopeLike) -> list[m.TrainingJob]:
        return self._send(self._list_jobs(scope))

    def cancel_job(self, job_id: str, scope: ScopeLike) -> m.TrainingJob:
        """Cancel a queued or running job; ``ConflictError`` once it has ended."""
        return self._send(self._cancel_job(job_id, scope))

    def import_adapter(
        self,
        scope: ScopeLike,
        adapter_dir: str | os.PathLike[str],
        *,
        name: str,
        model: str | None = None,
    ) -> m.TrainingJob:
        """Register a PEFT LoRA adapter directory as a completed job with a final adapter."""
        return self._send(self._import_adapter(scope, read_adapter(adapter_dir), name, model))

    def infer(
        self,
        scope: ScopeLike,
        *,
        messages: Sequence[Mapping[str, Any]],
        adapter: AdapterLike | None = None,
        base_model: str | None = None,
        **options: Unpack[InferenceOptions],
    ) -> dict[str, Any]:
        """Chat with a job's adapter or a base model (``POST /v1/inference/chat``, not
        streamed); answers the OpenAI ``chat.completion``. Give ``adapter`` or ``base_model``.
        E.g. ``client.infer(scope, messages=[...], base_model=name,
        response_format={"type": "json_object"})``."""
        return self._send(self._infer(scope, messages, adapter, base_model, options))

    def stream_events(
        self,
        job_id: str,
        scope: ScopeLike,
        *,
        last_event_id: str | int | None = None,
        reconnect: bool = True,
        policy: ReconnectPolicy | None = None,
    ) -> Generator[JobEvent, None, None]:
        """The job's events (``ping`` left out) up to and including ``end``, resuming after
        ``last_event_id`` and reconnecting as :mod:`arkor.sdk._events` describes."""
        follower = EventFollower(last_event_id=last_event_id, reconnect=reconnect, policy=policy)
        while not follower.done:
            call = self._stream_job_events(job_id, scope, follower.headers())
            try:
                with self._http.stream(**self._request(call)) as response:
                    action = follower.on_open(response.status_code)
                    if action == "read":
                        for text in response.iter_text():
                            yield from follower.feed(text)
                            if follower.done:
                                return
                        delay = follower.on_close()
                    else:
                        response.read()
                        delay = follower.on_error() if action == "retry" else None
                        if delay is None:
                            raise_for_response(response)
            except httpx.HTTPError as exc:
                delay = follower.on_error()
                if delay is None:
                    raise map_transport_error(exc, self.base_url) from exc
            if delay is None:
                return
            time.sleep(delay)


class AsyncCloudApiClient(BaseCloudApiClient):
    def __init__(
        self,
        *,
        base_url: str,
        credentials: Creds | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url=base_url, credentials=credentials, token=token, timeout=timeout)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout,
                                       transport=transport, limits=POOL_LIMITS)

    async def __aenter__(self) -> AsyncCloudApiClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(**self._request(call))
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, self.base_url) from exc
        raise_for_response(response)
        return call.parse(response)

    async def forward(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      json: Any = None, content: bytes | None = None,
                      headers: Mapping[str, str] | None = None, stream: bool = False,
                      raise_for_status: bool = False) -> httpx.Response:
        """Send any route with this client's headers and answer the raw response, whatever
        its status; ``raise_for_status=True`` raises the typed methods' errors instead.
        With ``stream=True`` the body is left unread: iterate it, then ``aclose()`` it."""
        request = self._http.build_request(
            **self._forward(method, path, params, json, content, headers, stream))
        try:
            response = await self._http.send(request, stream=stream)
            if raise_for_status and not response.is_success:
                await response.aread()
        except httpx.HTTPError as exc:
            raise map_transport_error(exc, self.base_url) from exc
        if raise_for_status:
            raise_for_response(response)
        return response

    async def create_anonymous_session(self, *, kind: str = "cli") -> m.AnonymousSession:
        return await self._send(self._create_anonymous_session(kind))

    async def get_cli_auth_config(self) -> m.CliAuthConfig:
        return await self._send(self._get_cli_auth_config())

    async def get_me(self) -> m.Me:
        return await self._send(self._get_me())

    async def accept_invite(self, code: str, *, email: str | None = None,
                            name: str | None = None) -> m.InviteSession:
        return await self._send(self._accept_invite(code, email, name))

    async def create_access_token(self, *, name: str,
                                  expires_in_days: int | None = None) -> m.CreatedAccessToken:
        return await self._send(self._create_access_token(name, expires_in_days))

    async def list_access_tokens(self) -> list[m.AccessToken]:
        return await self._send(self._list_access_tokens())

    async def revoke_access_token(self, token_id: str) -> None:
        await self._send(self._revoke_access_token(token_id))

    async def list_projects(self, org_slug: str) -> m.ProjectList:
        return await self._send(self._list_projects(org_slug))

    async def create_project(self, org_slug: str, *, name: str, slug: str) -> m.Project:
        return await self._send(self._create_project(org_slug, name, slug))

    async def list_members(self, org_slug: str) -> m.MemberList:
        return await self._send(self._list_members(org_slug))

    async def add_member(self, org_slug: str, *, email: str,
                         role: str = ROLE_MEMBER) -> m.OrgMember:
        return await self._send(self._add_member(org_slug, email, role))

    async def set_member_role(self, org_slug: str, user_id: str, *, role: str) -> m.OrgMember:
        return await self._send(self._set_member_role(org_slug, user_id, role))

    async def remove_member(self, org_slug: str, user_id: str) -> None:
        await self._send(self._remove_member(org_slug, user_id))

    async def list_base_models(self) -> list[m.BaseModelInfo]:
        return await self._send(self._list_base_models())

    async def list_deployments(self, scope: ScopeLike) -> list[m.Deployment]:
        return await self._send(self._list_deployments(scope))

    async def get_deployment(self, deployment_id: str, scope: ScopeLike) -> m.Deployment:
        return await self._send(self._get_deployment(deployment_id, scope))

    async def create_deployment(
        self,
        scope: ScopeLike,
        *,
        slug: str,
        target: m.AdapterTarget | m.BaseModelTarget | m.ModelMenuTarget | dict[str, Any],
        auth_mode: str = DEFAULT_AUTH_MODE,
        run_retention_mode: str | None = None,
        run_retention_days: int | None = None,
        expires_at: str | None = None,
    ) -> m.Deployment:
        return await self._send(self._create_deployment(
            scope, slug, target, auth_mode, run_retention_mode, run_retention_days, expires_at
        ))

    async def update_deployment(
        self,
        deployment_id: str,
        scope: ScopeLike,
        *,
        target: Any = UNSET,
        auth_mode: Any = UNSET,
        enabled: Any = UNSET,
        run_retention_mode: Any = UNSET,
        run_retention_days: Any = UNSET,
        limits: Any = UNSET,
        expires_at: Any = UNSET,
    ) -> m.Deployment:
        """Partial update: only the arguments you pass are sent. ``limits`` sets rate limits
        (``{"requests_per_minute": 60}``; None lifts one, a limit left out is kept);
        ``expires_at`` an ISO time, None to remove the expiry."""
        changes = {
            "target": target, "auth_mode": auth_mode, "enabled": enabled,
            "run_retention_mode": run_retention_mode, "run_retention_days": run_retention_days,
            "limits": limits, "expires_at": expires_at,
        }
        return await self._send(self._update_deployment(deployment_id, scope, changes))

    async def delete_deployment(self, deployment_id: str, scope: ScopeLike) -> None:
        await self._send(self._delete_deployment(deployment_id, scope))

    async def list_deployment_keys(
        self, deployment_id: str, scope: ScopeLike
    ) -> list[m.DeploymentKey]:
        return await self._send(self._list_deployment_keys(deployment_id, scope))

    async def create_deployment_key(
        self, deployment_id: str, scope: ScopeLike, *, label: str
    ) -> m.CreatedDeploymentKey:
        """Issue a key. ``result.plaintext`` is shown this once; store it now."""
        return await self._send(self._create_deployment_key(deployment_id, scope, label))

    async def update_deployment_key(
        self, deployment_id: str, key_id: str, scope: ScopeLike, *, limits: LimitsLike
    ) -> m.DeploymentKey:
        """Set a key's rate limits (None lifts one, a limit left out is kept)."""
        return await self._send(
            self._update_deployment_key(deployment_id, key_id, scope, limits))

    async def revoke_deployment_key(
        self, deployment_id: str, key_id: str, scope: ScopeLike
    ) -> None:
        await self._send(self._revoke_deployment_key(deployment_id, key_id, scope))

    async def list_domains(self, deployment_id: str, scope: ScopeLike) -> list[m.CustomDomain]:
        return await self._send(self._list_domains(deployment_id, scope))

    async def add_domain(self, deployment_id: str, scope: ScopeLike, *,
                         domain: str) -> m.CustomDomain:
        return await self._send(self._add_domain(deployment_id, scope, domain))

    async def verify_domain(self, deployment_id: str, domain: str,
                            scope: ScopeLike) -> m.CustomDomain:
        return await self._send(self._verify_domain(deployment_id, domain, scope))

    async def remove_domain(self, deployment_id: str, domain: str, scope: ScopeLike) -> None:
        await self._send(self._remove_domain(deployment_id, domain, scope))

    async def upload_dataset(
        self, scope: ScopeLike, path_or_bytes: PathOrBytes, *, name: str | None = None
    ) -> m.UploadedDataset:
        """Upload a chat-format JSONL file; a file with problems raises ``BadRequestError``
        listing them by line number."""
        content, filename = read_dataset(path_or_bytes)
        return await self._send(self._upload_dataset(scope, content, name or filename))

    async def list_datasets(self, scope: ScopeLike) -> list[m.UploadedDataset]:
        return await self._send(self._list_datasets(scope))

    async def delete_dataset(self, dataset_id: str, scope: ScopeLike) -> None:
        await self._send(self._delete_dataset(dataset_id, scope))

    async def list_runs(self, deployment_id: str, scope: ScopeLike, *,
                        filters: RunFilters | None = None, limit: int | None = None,
                        cursor: str | None = None) -> m.RunPage:
        return await self._send(self._list_runs(deployment_id, scope,
                                                filters or RunFilters(), limit, cursor))

    async def iter_runs(self, deployment_id: str, scope: ScopeLike, *,
                        filters: RunFilters | None = None) -> AsyncIterator[m.RunSummary]:
        """Every matching run, newest first, page after page."""
        cursor = None
        while True:
            page = await self.list_runs(deployment_id, scope, filters=filters, cursor=cursor)
            for run in page.runs:
                yield run
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get_run(self, deployment_id: str, run_id: str, scope: ScopeLike) -> m.Run:
        return await self._send(self._get_run(deployment_id, run_id, scope))

    async def mark_run(self, deployment_id: str, run_id: str, mark: str | None,
                       scope: ScopeLike) -> m.Run:
        return await self._send(self._mark_run(deployment_id, run_id, mark, scope))

    async def delete_run(self, deployment_id: str, run_id: str, scope: ScopeLike) -> None:
        await self._send(self._delete_run(deployment_id, run_id, scope))

    async def delete_runs(self, deployment_id: str, scope: ScopeLike) -> int:
        return await self._send(self._delete_runs(deployment_id, scope))

    async def get_usage(self, deployment_id: str, scope: ScopeLike, *,
                        granularity: str = "hour", since: str | None = None,
                        until: str | None = None, key_id: str | None = None
                        ) -> m.UsageReport:
        return await self._send(self._usage(deployment_id, scope,
                                            granularity, since, until, key_id))

    async def get_project_usage(self, scope: ScopeLike, *, granularity: str = "day",
                                since: str | None = None, until: str | None = None
                                ) -> m.ProjectUsageReport:
        return await self._send(self._project_usage(scope, granularity, since, until))

    async def export_runs(self, deployment_id: str, scope: ScopeLike, *,
                          filters: RunFilters | None = None) -> m.ExportedRuns:
        return await self._send(self._export_runs(deployment_id, scope,
                                                  filters or RunFilters()))

    async def create_job(
        self, scope: ScopeLike, *, name: str, config: Mapping[str, Any]
    ) -> m.TrainingJob:
        return await self._send(self._create_job(scope, name, config))

    async def get_job(self, job_id: str, scope: ScopeLike) -> m.TrainingJob:
        return await self._send(self._get_job(job_id, scope))

    async def list_jobs(self, scope: ScopeLike) -> list[m.TrainingJob]:
        return await self._send(self._list_jobs(scope))

    async def cancel_job(self, job_id: str, scope: ScopeLike) -> m.TrainingJob:
        """Cancel a queued or running job; ``ConflictError`` once it has ended."""
        return await self._send(self._cancel_job(job_id, scope))

    async def import_adapter(
        self,
        scope: ScopeLike,
        adapter_dir: str | os.PathLike[str],
        *,
        name: str,
        model: str | None = None,
    ) -> m.TrainingJob:
        """Register a PEFT LoRA adapter directory as a completed job with a final adapter."""
        return await self._send(
            self._import_adapter(scope, read_adapter(adapter_dir), name, model)
        )

    async def infer(
        self,
        scope: ScopeLike,
        *,
        messages: Sequence[Mapping[str, Any]],
        adapter: AdapterLike | None = None,
        base_model: str | None = None,
        **options: Unpack[InferenceOptions],
    ) -> dict[str, Any]:
        """Chat with a job's adapter or a base model (``POST /v1/inference/chat``, not
        streamed); answers the OpenAI ``chat.completion``. Give ``adapter`` or ``base_model``."""
        return await self._send(self._infer(scope, messages, adapter, base_model, options))

    async def stream_events(
        self,
        job_id: str,
        scope: ScopeLike,
        *,
        last_event_id: str | int | None = None,
        reconnect: bool = True,
        policy: ReconnectPolicy | None = None,
    ) -> AsyncGenerator[JobEvent, None]:
        """The job's events (``ping`` left out) up to and including ``end``, resuming after
        ``last_event_id`` and reconnecting as :mod:`arkor.sdk._events` describes."""
        follower = EventFollower(last_event_id=last_event_id, reconnect=reconnect, policy=policy)
        while not follower.done:
            call = self._stream_job_events(job_id, scope, follower.headers())
            try:
                async with self._http.stream(**self._request(call)) as response:
                    action = follower.on_open(response.status_code)
                    if action == "read":
                        async for text in response.aiter_text():
                            for event in follower.feed(text):
                                yield event
                            if follower.done:
                                return
                        delay = follower.on_close()
                    else:
                        await response.aread()
                        delay = follower.on_error() if action == "retry" else None
                        if delay is None:
                            raise_for_response(response)
            except httpx.HTTPError as exc:
                delay = follower.on_error()
                if delay is None:
                    raise map_transport_error(exc, self.base_url) from exc
            if delay is None:
                return
            await asyncio.sleep(delay)
