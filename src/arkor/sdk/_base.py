"""Everything the sync and async clients share: building calls and reading responses.

Each API method is written once as a :class:`Call` (method, path, query, body, and how to
parse the answer); :class:`CloudApiClient` and :class:`AsyncCloudApiClient` only send it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypedDict, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from arkor._version import SDK_VERSION
from arkor.contract import models as m
from arkor.contract.artifacts import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from arkor.contract.domains import DOMAIN_ROUTE, DOMAIN_VERIFY_ROUTE, DOMAINS_ROUTE
from arkor.sdk._credentials import (
    AnyCredentials,
    check_token_origin,
)
from arkor.sdk._errors import ApiConnectionError, ApiTimeoutError, CloudApiError, error_for_status

T = TypeVar("T")
DEFAULT_TIMEOUT = 30.0
UPGRADE_COMMAND = "pip install -U arkor"
ADAPTER_FILES = {ADAPTER_CONFIG: "application/json", ADAPTER_WEIGHTS: "application/octet-stream"}


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class ProjectScope:
    """The org and project a call is scoped to (``orgSlug`` / ``projectSlug`` on the wire)."""

    org_slug: str
    project_slug: str

    def params(self) -> dict[str, str]:
        return {"orgSlug": self.org_slug, "projectSlug": self.project_slug}


ScopeLike = ProjectScope | Mapping[str, str]


def as_scope(scope: ScopeLike) -> ProjectScope:
    if isinstance(scope, ProjectScope):
        return scope
    org = scope.get("orgSlug") or scope.get("org_slug")
    project = scope.get("projectSlug") or scope.get("project_slug")
    if not org or not project:
        raise ValueError("scope needs orgSlug and projectSlug (or org_slug and project_slug)")
    return ProjectScope(org_slug=org, project_slug=project)


LimitsLike = m.RateLimits | Mapping[str, int | None]


def _limits(limits: LimitsLike) -> dict[str, Any]:
    """The limits given (camelCase or snake_case keys, or a ``RateLimits`` built with only
    the fields to change); None lifts a limit, a field left out keeps its value."""
    model = limits if isinstance(limits, m.RateLimits) else m.RateLimits.model_validate(
        dict(limits))
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _usage_params(scope: ScopeLike, granularity: str | None, since: str | None,
                  until: str | None, key_id: str | None) -> dict[str, str]:
    params = as_scope(scope).params()
    for name, value in (("granularity", granularity), ("from", since), ("to", until),
                        ("keyId", key_id)):
        if value:
            params[name] = value
    return params


def _segment(value: str) -> str:
    return quote(value, safe="")


def _wire(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return value


@dataclass(frozen=True)
class RunFilters:
    """Which stored runs a list or an export takes (all of them by default)."""

    status: str | None = None
    key_id: str | None = None
    since: str | None = None  # ISO time, inclusive
    until: str | None = None  # ISO time, exclusive
    q: str | None = None  # text in the request or the answer
    mark: str | None = None  # good or bad

    def params(self) -> dict[str, str]:
        names = {"status": self.status, "keyId": self.key_id, "from": self.since,
                 "to": self.until, "q": self.q, "mark": self.mark}
        return {name: value for name, value in names.items() if value}


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    data: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: bool = True


def _field(name: str, model: type[BaseModel]) -> Callable[[httpx.Response], Any]:
    def parse(response: httpx.Response) -> Any:
        return model.model_validate(response.json()[name])

    return parse


def _list(name: str, model: type[BaseModel]) -> Callable[[httpx.Response], Any]:
    def parse(response: httpx.Response) -> Any:
        return [model.model_validate(item) for item in response.json()[name]]

    return parse


def _whole(model: type[BaseModel]) -> Callable[[httpx.Response], Any]:
    return lambda response: model.model_validate(response.json())


def _member(response: httpx.Response) -> m.OrgMember:
    return m.MemberEnvelope.model_validate(response.json()).member


def _nothing(_response: httpx.Response) -> None:
    return None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    if not isinstance(body, dict):
        raise CloudApiError(response.status_code, "The server answered JSON that is not an "
                            "object")
    return body


class InferenceOptions(TypedDict, total=False):
    """The optional fields of ``infer`` (None is left out of the request): sampling, and
    upstream Arkor's tools and output constraints, in OpenAI's shapes (``tools``,
    ``tool_choice``, ``response_format``) and vLLM's (``structured_outputs``: exactly one of
    ``json``, ``regex``, ``choice``, ``grammar``)."""

    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    tools: Sequence[Mapping[str, Any]] | None
    tool_choice: str | Mapping[str, Any] | None
    parallel_tool_calls: bool | None
    response_format: Mapping[str, Any] | None
    structured_outputs: Mapping[str, Any] | None


INFERENCE_FIELDS = {"temperature": "temperature", "top_p": "topP", "max_tokens": "maxTokens",
                    "tools": "tools", "tool_choice": "toolChoice",
                    "parallel_tool_calls": "parallelToolCalls",
                    "response_format": "responseFormat",
                    "structured_outputs": "structuredOutputs"}
"""``infer``'s option names → the camelCase body of ``POST /v1/inference/chat``."""


def read_dataset(path_or_bytes: str | os.PathLike[str] | bytes) -> tuple[bytes, str | None]:
    """The upload body, and the file name to show when it came from a file."""
    if isinstance(path_or_bytes, bytes):
        return path_or_bytes, None
    path = Path(path_or_bytes)
    return path.read_bytes(), path.name


def read_adapter(adapter_dir: str | os.PathLike[str]) -> dict[str, bytes]:
    folder = Path(adapter_dir)
    missing = [name for name in ADAPTER_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} has no {' or '.join(missing)}: pass a PEFT LoRA "
                                "adapter directory (adapter_config.json and "
                                "adapter_model.safetensors)")
    return {name: (folder / name).read_bytes() for name in ADAPTER_FILES}


def _strip_plaintext(response: httpx.Response) -> list[m.DeploymentKey]:
    keys = []
    for item in response.json()["keys"]:
        item = {k: v for k, v in item.items() if k != "plaintext"}
        keys.append(m.DeploymentKey.model_validate(item))
    return keys


def upgrade_message(response: httpx.Response) -> str:
    """The 426 answer as a sentence that says which version is too old and what to run."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "supportedRange" not in body:
        return f"Arkor SDK is no longer supported by the cloud API. Run `{UPGRADE_COMMAND}`."
    current = body.get("currentVersion") or SDK_VERSION
    message = (
        f"Arkor SDK {current} is no longer supported by the cloud API "
        f"(supported: {body['supportedRange']}). Run `{UPGRADE_COMMAND}`."
    )
    reason = body.get("reason")
    if reason in ("missing", "malformed"):
        message += f" (The X-Arkor-Client header was {reason}.)"
    return message


def error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str) and error:
        return error
    text = response.text.strip()
    return text[:500] if text else f"cloud-api {response.status_code}"


def raise_for_response(response: httpx.Response) -> None:
    if response.is_success:
        return
    status = response.status_code
    message = upgrade_message(response) if status == 426 else error_message(response)
    raise error_for_status(status, message)


def map_transport_error(exc: httpx.HTTPError, base_url: str) -> CloudApiError:
    if isinstance(exc, httpx.TimeoutException):
        return ApiTimeoutError(f"The Arkor cloud API at {base_url} did not answer in time.")
    return ApiConnectionError(
        f"Could not reach the Arkor cloud API at {base_url} ({type(exc).__name__}: {exc}). "
        "Is it running (`arkor dev` or `arkor cloud serve`)? Set ARKOR_CLOUD_API_URL to "
        "point elsewhere."
    )


class BaseCloudApiClient:
    def __init__(
        self,
        *,
        base_url: str,
        credentials: AnyCredentials | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        if token is None and credentials is not None:
            check_token_origin(credentials, self.base_url, stacklevel=3)
        self._token = token if token is not None else (credentials.bearer if credentials else None)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _headers(self, call: Call[Any]) -> dict[str, str]:
        headers = {"X-Arkor-Client": f"arkor/{SDK_VERSION}", "Accept": "application/json"}
        if call.auth and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _request(self, call: Call[Any]) -> dict[str, Any]:
        request: dict[str, Any] = {
            "method": call.method,
            "url": call.path,
            "params": dict(call.params),
            "headers": {**self._headers(call), **call.headers},
        }
        for name in ("json", "content", "files", "data"):
            if getattr(call, name) is not None:
                request[name] = getattr(call, name)
        return request

    def _forward(self, method: str, path: str, params: Mapping[str, str] | None, json: Any,
                 content: bytes | None, headers: Mapping[str, str] | None,
                 stream: bool) -> dict[str, Any]:
        """Any route, sent like the typed calls; a stream has no read timeout."""
        call = Call(method, path, _nothing, params=params or {}, json=json, content=content,
                    headers=headers or {})
        timeout = httpx.Timeout(self.timeout, read=None if stream else self.timeout)
        return {**self._request(call), "timeout": timeout}

    # Each method below describes one route; the clients send it.

    def _create_anonymous_session(self, kind: str) -> Call[m.AnonymousSession]:
        return Call("POST", "/v1/auth/anonymous", _whole(m.AnonymousSession),
                    json={"kind": kind}, auth=False)

    def _get_cli_auth_config(self) -> Call[m.CliAuthConfig]:
        return Call("GET", "/v1/auth/cli/config", _whole(m.CliAuthConfig), auth=False)

    def _get_me(self) -> Call[m.Me]:
        return Call("GET", "/v1/me", _whole(m.Me))

    def _accept_invite(self, code: str, email: str | None, name: str | None
                       ) -> Call[m.InviteSession]:
        body = {k: v for k, v in {"code": code, "email": email, "name": name}.items()
                if v is not None}
        return Call("POST", "/v1/auth/invite", _whole(m.InviteSession), json=body, auth=False)

    def _create_access_token(self, name: str, expires_in_days: int | None
                             ) -> Call[m.CreatedAccessToken]:
        body: dict[str, Any] = {"name": name}
        if expires_in_days is not None:
            body["expiresInDays"] = expires_in_days
        return Call("POST", "/v1/auth/tokens", _field("token", m.CreatedAccessToken), json=body)

    def _list_access_tokens(self) -> Call[list[m.AccessToken]]:
        return Call("GET", "/v1/auth/tokens", _list("tokens", m.AccessToken))

    def _revoke_access_token(self, token_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/auth/tokens/{_segment(token_id)}", _nothing)

    def _list_projects(self, org_slug: str) -> Call[m.ProjectList]:
        return Call("GET", "/v1/projects", _whole(m.ProjectList), params={"orgSlug": org_slug})

    def _create_project(self, org_slug: str, name: str, slug: str) -> Call[m.Project]:
        return Call("POST", "/v1/projects", _field("project", m.Project),
                    params={"orgSlug": org_slug}, json={"name": name, "slug": slug})

    def _list_members(self, org_slug: str) -> Call[m.MemberList]:
        return Call("GET", "/v1/members", _whole(m.MemberList), params={"orgSlug": org_slug})

    def _add_member(self, org_slug: str, email: str, role: str) -> Call[m.OrgMember]:
        return Call("POST", "/v1/members", _member,
                    params={"orgSlug": org_slug}, json={"email": email, "role": role})

    def _set_member_role(self, org_slug: str, user_id: str, role: str) -> Call[m.OrgMember]:
        return Call("PATCH", f"/v1/members/{_segment(user_id)}", _member,
                    params={"orgSlug": org_slug}, json={"role": role})

    def _remove_member(self, org_slug: str, user_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/members/{_segment(user_id)}", _nothing,
                    params={"orgSlug": org_slug})

    def _list_base_models(self) -> Call[list[m.BaseModelInfo]]:
        return Call("GET", "/v1/base-models", _list("baseModels", m.BaseModelInfo))

    def _list_deployments(self, scope: ScopeLike) -> Call[list[m.Deployment]]:
        return Call("GET", "/v1/endpoints", _list("deployments", m.Deployment),
                    params=as_scope(scope).params())

    def _get_deployment(self, deployment_id: str, scope: ScopeLike) -> Call[m.Deployment]:
        return Call("GET", f"/v1/endpoints/{_segment(deployment_id)}",
                    _field("deployment", m.Deployment), params=as_scope(scope).params())

    def _create_deployment(
        self,
        scope: ScopeLike,
        slug: str,
        target: Any,
        auth_mode: str,
        run_retention_mode: str | None,
        run_retention_days: int | None,
        expires_at: str | None = None,
    ) -> Call[m.Deployment]:
        body: dict[str, Any] = {"slug": slug, "target": _wire(target), "authMode": auth_mode}
        if expires_at is not None:
            body["expiresAt"] = expires_at
        if run_retention_mode is not None:
            body["runRetentionMode"] = run_retention_mode
        if run_retention_days is not None:
            body["runRetentionDays"] = run_retention_days
        return Call("POST", "/v1/endpoints", _field("deployment", m.Deployment),
                    params=as_scope(scope).params(), json=body)

    def _update_deployment(
        self, deployment_id: str, scope: ScopeLike, changes: Mapping[str, Any]
    ) -> Call[m.Deployment]:
        names = {
            "target": "target", "auth_mode": "authMode", "enabled": "enabled",
            "run_retention_mode": "runRetentionMode", "run_retention_days": "runRetentionDays",
            "limits": "limits", "expires_at": "expiresAt",
        }
        body = {names[k]: _limits(v) if k == "limits" else _wire(v)
                for k, v in changes.items() if v is not UNSET}
        return Call("PATCH", f"/v1/endpoints/{_segment(deployment_id)}",
                    _field("deployment", m.Deployment), params=as_scope(scope).params(),
                    json=body)

    def _delete_deployment(self, deployment_id: str, scope: ScopeLike) -> Call[None]:
        return Call("DELETE", f"/v1/endpoints/{_segment(deployment_id)}", _nothing,
                    params=as_scope(scope).params())

    def _list_deployment_keys(
        self, deployment_id: str, scope: ScopeLike
    ) -> Call[list[m.DeploymentKey]]:
        return Call("GET", f"/v1/endpoints/{_segment(deployment_id)}/keys", _strip_plaintext,
                    params=as_scope(scope).params())

    def _create_deployment_key(
        self, deployment_id: str, scope: ScopeLike, label: str
    ) -> Call[m.CreatedDeploymentKey]:
        return Call("POST", f"/v1/endpoints/{_segment(deployment_id)}/keys",
                    _field("key", m.CreatedDeploymentKey), params=as_scope(scope).params(),
                    json={"label": label})

    def _update_deployment_key(
        self, deployment_id: str, key_id: str, scope: ScopeLike, limits: LimitsLike
    ) -> Call[m.DeploymentKey]:
        return Call("PATCH",
                    f"/v1/endpoints/{_segment(deployment_id)}/keys/{_segment(key_id)}",
                    _field("key", m.DeploymentKey), params=as_scope(scope).params(),
                    json={"limits": _limits(limits)})

    def _revoke_deployment_key(
        self, deployment_id: str, key_id: str, scope: ScopeLike
    ) -> Call[None]:
        return Call("DELETE",
                    f"/v1/endpoints/{_segment(deployment_id)}/keys/{_segment(key_id)}",
                    _nothing, params=as_scope(scope).params())

    def _domain_path(self, route: str, deployment_id: str, domain: str = "") -> str:
        return route.format(deployment_id=_segment(deployment_id), domain=_segment(domain))

    def _list_domains(self, deployment_id: str, scope: ScopeLike) -> Call[list[m.CustomDomain]]:
        return Call("GET", self._domain_path(DOMAINS_ROUTE, deployment_id),
                    _list("domains", m.CustomDomain), params=as_scope(scope).params())

    def _add_domain(self, deployment_id: str, scope: ScopeLike,
                    domain: str) -> Call[m.CustomDomain]:
        return Call("POST", self._domain_path(DOMAINS_ROUTE, deployment_id),
                    _field("domain", m.CustomDomain), params=as_scope(scope).params(),
                    json={"domain": domain})

    def _verify_domain(self, deployment_id: str, domain: str,
                       scope: ScopeLike) -> Call[m.CustomDomain]:
        return Call("POST", self._domain_path(DOMAIN_VERIFY_ROUTE, deployment_id, domain),
                    _field("domain", m.CustomDomain), params=as_scope(scope).params())

    def _remove_domain(self, deployment_id: str, domain: str, scope: ScopeLike) -> Call[None]:
        return Call("DELETE", self._domain_path(DOMAIN_ROUTE, deployment_id, domain), _nothing,
                    params=as_scope(scope).params())

    def _upload_dataset(self, scope: ScopeLike, content: bytes, name: str | None
                        ) -> Call[m.UploadedDataset]:
        params = as_scope(scope).params()
        if name is not None:
            params["name"] = name
        return Call("POST", "/v1/datasets", _field("dataset", m.UploadedDataset), params=params,
                    content=content, headers={"Content-Type": "application/octet-stream"})

    def _list_datasets(self, scope: ScopeLike) -> Call[list[m.UploadedDataset]]:
        return Call("GET", "/v1/datasets", _list("datasets", m.UploadedDataset),
                    params=as_scope(scope).params())

    def _runs_path(self, deployment_id: str, run_id: str | None = None) -> str:
        path = f"/v1/endpoints/{_segment(deployment_id)}/runs"
        return path + (f"/{_segment(run_id)}" if run_id else "")

    def _list_runs(self, deployment_id: str, scope: ScopeLike, filters: RunFilters,
                   limit: int | None, cursor: str | None) -> Call[m.RunPage]:
        params = {**as_scope(scope).params(), **filters.params()}
        if limit is not None:
            params["limit"] = str(limit)
        if cursor:
            params["cursor"] = cursor
        return Call("GET", self._runs_path(deployment_id), _whole(m.RunPage), params=params)

    def _get_run(self, deployment_id: str, run_id: str, scope: ScopeLike) -> Call[m.Run]:
        return Call("GET", self._runs_path(deployment_id, run_id), _field("run", m.Run),
                    params=as_scope(scope).params())

    def _mark_run(self, deployment_id: str, run_id: str, mark: str | None,
                  scope: ScopeLike) -> Call[m.Run]:
        return Call("PATCH", self._runs_path(deployment_id, run_id), _field("run", m.Run),
                    params=as_scope(scope).params(), json={"mark": mark})

    def _delete_run(self, deployment_id: str, run_id: str, scope: ScopeLike) -> Call[None]:
        return Call("DELETE", self._runs_path(deployment_id, run_id), _nothing,
                    params=as_scope(scope).params())

    def _delete_runs(self, deployment_id: str, scope: ScopeLike) -> Call[int]:
        return Call("DELETE", self._runs_path(deployment_id),
                    lambda r: int(r.json()["deleted"]), params=as_scope(scope).params())

    def _export_runs(self, deployment_id: str, scope: ScopeLike,
                     filters: RunFilters) -> Call[m.ExportedRuns]:
        def parse(response: httpx.Response) -> m.ExportedRuns:
            return m.ExportedRuns(jsonl=response.text,
                                  exported=int(response.headers.get("x-arkor-exported", 0)),
                                  skipped=int(response.headers.get("x-arkor-skipped", 0)))

        return Call("GET", self._runs_path(deployment_id) + "/export", parse,
                    params={**as_scope(scope).params(), **filters.params()})

    def _usage(self, deployment_id: str, scope: ScopeLike, granularity: str | None,
               since: str | None, until: str | None, key_id: str | None = None
               ) -> Call[m.UsageReport]:
        """A deployment's usage."""
        return Call("GET", f"/v1/endpoints/{_segment(deployment_id)}/usage",
                    _whole(m.UsageReport),
                    params=_usage_params(scope, granularity, since, until, key_id))

    def _project_usage(self, scope: ScopeLike, granularity: str | None, since: str | None,
                       until: str | None) -> Call[m.ProjectUsageReport]:
        """The project's usage: its deployments' and the control plane's inference route."""
        return Call("GET", "/v1/usage", _whole(m.ProjectUsageReport),
                    params=_usage_params(scope, granularity, since, until, None))

    def _delete_dataset(self, dataset_id: str, scope: ScopeLike) -> Call[None]:
        return Call("DELETE", f"/v1/datasets/{_segment(dataset_id)}", _nothing,
                    params=as_scope(scope).params())

    def _create_job(self, scope: ScopeLike, name: str, config: Mapping[str, Any]
                    ) -> Call[m.TrainingJob]:
        return Call("POST", "/v1/jobs", _field("job", m.TrainingJob),
                    params=as_scope(scope).params(), json={"name": name, "config": dict(config)})

    def _list_jobs(self, scope: ScopeLike) -> Call[list[m.TrainingJob]]:
        return Call("GET", "/v1/jobs", _list("jobs", m.TrainingJob),
                    params=as_scope(scope).params())

    def _get_job(self, job_id: str, scope: ScopeLike) -> Call[m.TrainingJob]:
        return Call("GET", f"/v1/jobs/{_segment(job_id)}", _field("job", m.TrainingJob),
                    params=as_scope(scope).params())

    def _cancel_job(self, job_id: str, scope: ScopeLike) -> Call[m.TrainingJob]:
        return Call("POST", f"/v1/jobs/{_segment(job_id)}/cancel", _field("job", m.TrainingJob),
                    params=as_scope(scope).params())

    def _import_adapter(
        self, scope: ScopeLike, files: Mapping[str, bytes], name: str, model: str | None
    ) -> Call[m.TrainingJob]:
        parts = [("files", (filename, body, ADAPTER_FILES[filename]))
                 for filename, body in files.items()]
        form = {"name": name} if model is None else {"name": name, "model": model}
        return Call("POST", "/v1/jobs/import", _field("job", m.TrainingJob),
                    params=as_scope(scope).params(), files=parts, data=form)

    def _infer(self, scope: ScopeLike, messages: Sequence[Mapping[str, Any]],
               adapter: Any, base_model: str | None, options: InferenceOptions
               ) -> Call[dict[str, Any]]:
        body: dict[str, Any] = {"messages": [dict(message) for message in messages],
                                "stream": False}
        if adapter is not None:
            body["adapter"] = _wire(adapter)
        if base_model is not None:
            body["baseModel"] = base_model
        for name, value in options.items():
            if value is not None:
                body[INFERENCE_FIELDS[name]] = _wire(value)
        return Call("POST", "/v1/inference/chat", _json_object,
                    params=as_scope(scope).params(), json=body)

    def _stream_job_events(self, job_id: str, scope: ScopeLike,
                           headers: Mapping[str, str]) -> Call[None]:
        return Call("GET", f"/v1/jobs/{_segment(job_id)}/events/stream", _nothing,
                    params=as_scope(scope).params(), headers=headers)
