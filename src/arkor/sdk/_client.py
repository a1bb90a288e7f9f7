"""``CloudApiClient`` (sync) and ``AsyncCloudApiClient``: the same methods, one sends with
``httpx.Client``, the other with ``httpx.AsyncClient``. Pass ``transport=`` to talk to an app
in-process (``httpx.ASGITransport``) or to a ``MockTransport`` in tests.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx

from arkor.sdk import _models as m
from arkor.sdk._base import (
    DEFAULT_TIMEOUT,
    UNSET,
    BaseCloudApiClient,
    Call,
    ScopeLike,
    map_transport_error,
    raise_for_response,
)
from arkor.sdk._credentials import AnonymousCredentials, OAuthCredentials

T = TypeVar("T")
Creds = AnonymousCredentials | OAuthCredentials


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
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

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

    def create_anonymous_session(self, *, kind: str = "cli") -> m.AnonymousSession:
        return self._send(self._create_anonymous_session(kind))

    def get_cli_auth_config(self) -> m.CliAuthConfig:
        return self._send(self._get_cli_auth_config())

    def get_me(self) -> m.Me:
        return self._send(self._get_me())

    def list_projects(self, org_slug: str) -> m.ProjectList:
        return self._send(self._list_projects(org_slug))

    def create_project(self, org_slug: str, *, name: str, slug: str) -> m.Project:
        return self._send(self._create_project(org_slug, name, slug))

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
        target: m.AdapterTarget | m.BaseModelTarget | dict[str, Any],
        auth_mode: str = "fixed_api_key",
        run_retention_mode: str | None = None,
        run_retention_days: int | None = None,
    ) -> m.Deployment:
        return self._send(self._create_deployment(
            scope, slug, target, auth_mode, run_retention_mode, run_retention_days
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
    ) -> m.Deployment:
        """Partial update: only the arguments you pass are sent."""
        changes = {
            "target": target, "auth_mode": auth_mode, "enabled": enabled,
            "run_retention_mode": run_retention_mode, "run_retention_days": run_retention_days,
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

    def revoke_deployment_key(self, deployment_id: str, key_id: str, scope: ScopeLike) -> None:
        self._send(self._revoke_deployment_key(deployment_id, key_id, scope))


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
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)

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

    async def create_anonymous_session(self, *, kind: str = "cli") -> m.AnonymousSession:
        return await self._send(self._create_anonymous_session(kind))

    async def get_cli_auth_config(self) -> m.CliAuthConfig:
        return await self._send(self._get_cli_auth_config())

    async def get_me(self) -> m.Me:
        return await self._send(self._get_me())

    async def list_projects(self, org_slug: str) -> m.ProjectList:
        return await self._send(self._list_projects(org_slug))

    async def create_project(self, org_slug: str, *, name: str, slug: str) -> m.Project:
        return await self._send(self._create_project(org_slug, name, slug))

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
        target: m.AdapterTarget | m.BaseModelTarget | dict[str, Any],
        auth_mode: str = "fixed_api_key",
        run_retention_mode: str | None = None,
        run_retention_days: int | None = None,
    ) -> m.Deployment:
        return await self._send(self._create_deployment(
            scope, slug, target, auth_mode, run_retention_mode, run_retention_days
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
    ) -> m.Deployment:
        """Partial update: only the arguments you pass are sent."""
        changes = {
            "target": target, "auth_mode": auth_mode, "enabled": enabled,
            "run_retention_mode": run_retention_mode, "run_retention_days": run_retention_days,
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

    async def revoke_deployment_key(
        self, deployment_id: str, key_id: str, scope: ScopeLike
    ) -> None:
        await self._send(self._revoke_deployment_key(deployment_id, key_id, scope))
