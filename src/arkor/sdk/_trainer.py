"""``create_trainer``: start a fine-tuning job and follow it with callbacks (contract §3.5).

Options are snake_case here and camelCase in the job's ``config``; only the options given are
sent, so the server's defaults apply to the rest. What happens on each event (which callback
fires with what, how the local job snapshot changes) is decided once in
:class:`_TrainerCore`; :class:`Trainer` and :class:`AsyncTrainer` only do the I/O.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Required

from typing_extensions import Unpack

from arkor.contract.deployments import ADAPTER_CHECKPOINT
from arkor.contract.events import CHECKPOINT, COMPLETED, FAILED, LOG, STARTED, TERMINAL_EVENTS
from arkor.contract.job_config import TrainerOptions, wire_name
from arkor.contract.models import TrainingJob
from arkor.sdk._base import ProjectScope, ScopeLike, as_scope
from arkor.sdk._bootstrap import (
    aensure_credentials,
    aensure_project_state,
    ensure_credentials,
    ensure_project_state,
)
from arkor.sdk._client import AsyncCloudApiClient, CloudApiClient
from arkor.sdk._credentials import (
    AnyCredentials,
    default_arkor_cloud_api_url,
)
from arkor.sdk._events import JobEvent, ReconnectPolicy

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
OPTION_NAMES = frozenset(TrainerOptions.__annotations__)

Creds = AnyCredentials
DatasetArg = str | os.PathLike[str] | Mapping[str, Any]


@dataclass(frozen=True)
class StartedInfo:
    job: TrainingJob
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LogInfo:
    step: int
    loss: float | None
    eval_loss: float | None
    learning_rate: float | None
    epoch: float | None
    samples_per_second: float | None
    job: TrainingJob


@dataclass(frozen=True)
class CheckpointInfo:
    step: int
    adapter: dict[str, Any]
    job: TrainingJob
    artifacts: list[Any]


@dataclass(frozen=True)
class CompletedInfo:
    """``metrics`` is the ``training.completed`` event's: ``finalLoss``, ``totalSteps`` and
    ``totalTime`` (each ``None`` when unknown), and whatever else the trainer reported."""

    job: TrainingJob
    artifacts: list[Any]
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FailedInfo:
    """``step`` is the last step the job reached, ``None`` when it never began training or
    the server did not say."""

    job: TrainingJob
    error: str
    step: int | None = None


@dataclass(frozen=True)
class TrainingResult:
    """What ``wait()`` returns: the job as the server has it at the end, and its artifacts."""

    job: TrainingJob
    artifacts: list[Any]


Info = StartedInfo | LogInfo | CheckpointInfo | CompletedInfo | FailedInfo
Callback = Callable[[Any], Any]


@dataclass(frozen=True)
class TrainerSpec:
    """Everything ``create_trainer`` was given, minus the connection."""

    name: str
    dataset: DatasetArg
    model: str = DEFAULT_MODEL
    options: Mapping[str, Any] = field(default_factory=dict)
    extra_config: Mapping[str, Any] = field(default_factory=dict)
    callbacks: Mapping[str, Callback | None] = field(default_factory=dict)

    def config(self, dataset_source: Mapping[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = {"model": self.model, "datasetSource": dict(dataset_source)}
        for option, value in self.options.items():
            if value is not None:
                config[wire_name(option)] = value
        config.update(self.extra_config)
        return config

    def upload_path(self) -> Path | None:
        """The local JSONL file to upload first, or ``None`` for a ``datasetSource`` dict."""
        return None if isinstance(self.dataset, Mapping) else Path(self.dataset)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class _TrainerCore:
    def __init__(self, spec: TrainerSpec, *, credentials: Creds | None, cwd: Path | None,
                 scope: ScopeLike | None, policy: ReconnectPolicy | None) -> None:
        self.spec = spec
        self.name = spec.name
        self._credentials = credentials
        self._cwd = cwd
        self._scope: ProjectScope | None = as_scope(scope) if scope is not None else None
        self._policy = policy
        self._job: TrainingJob | None = None
        self._last_event_id: str | None = None
        self._result: TrainingResult | None = None

    @property
    def job_id(self) -> str | None:
        return self._job.id if self._job else None

    def _observe(self, event: JobEvent) -> tuple[Callback | None, Info] | None:
        """Update the local job snapshot; the callback (and its argument) this event fires."""
        assert self._job is not None
        self._last_event_id = event.id
        data = event.data
        callbacks = self.spec.callbacks
        if event.type == STARTED:
            self._job = self._job.model_copy(
                update={"status": "running", "started_at": data.get("timestamp")})
            metadata = data.get("metadata")
            return callbacks.get("on_started"), StartedInfo(
                job=self._job, metadata=metadata if isinstance(metadata, dict) else {})
        if event.type == LOG and isinstance(data.get("step"), int):
            return callbacks.get("on_log"), LogInfo(
                step=data["step"], loss=_number(data, "loss"), eval_loss=_number(data, "evalLoss"),
                learning_rate=_number(data, "learningRate"), epoch=_number(data, "epoch"),
                samples_per_second=_number(data, "samplesPerSecond"), job=self._job)
        if event.type == CHECKPOINT and isinstance(data.get("step"), int):
            adapter = {"kind": ADAPTER_CHECKPOINT, "jobId": self._job.id, "step": data["step"]}
            return callbacks.get("on_checkpoint"), CheckpointInfo(
                step=data["step"], adapter=adapter, job=self._job,
                artifacts=list(data.get("artifacts") or []))
        return None

    def _finish(self, job: TrainingJob, terminal: JobEvent | None
                ) -> tuple[Callback | None, Info] | None:
        """Record the result; the terminal callback to fire (none for a cancelled job)."""
        self._job = job
        data: Mapping[str, Any] = terminal.data if terminal is not None else {}
        completed = terminal is not None and terminal.type == COMPLETED
        artifacts = list(data.get("artifacts") or []) if completed else []
        self._result = TrainingResult(job=job, artifacts=artifacts)
        if completed:
            metrics = data.get("metrics")
            return self.spec.callbacks.get("on_completed"), CompletedInfo(
                job, artifacts, metrics=dict(metrics) if isinstance(metrics, dict) else {})
        if job.status == "failed":
            error = data.get("error") or job.error or "failed"
            step = data.get("step") if terminal is not None and terminal.type == FAILED else None
            return self.spec.callbacks.get("on_failed"), FailedInfo(
                job, str(error), step=step if _is_int(step) else None)
        return None


class Trainer(_TrainerCore):
    """``start()`` the job, ``wait()`` for it with callbacks, or ``cancel()`` it."""

    def __init__(self, spec: TrainerSpec, *, client: CloudApiClient | None = None,
                 credentials: Creds | None = None, cwd: Path | None = None,
                 scope: ScopeLike | None = None, policy: ReconnectPolicy | None = None) -> None:
        super().__init__(spec, credentials=credentials, cwd=cwd, scope=scope, policy=policy)
        self._client = client
        self._owns_client = False

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client, self._owns_client = None, False

    def _connect(self) -> tuple[CloudApiClient, ProjectScope]:
        client = self._client
        credentials = self._credentials or (client.credentials if client else None)
        if credentials is None and (client is None or self._scope is None):
            credentials = ensure_credentials(base_url=client.base_url if client else None)
        if client is None:
            assert credentials is not None
            client = CloudApiClient(base_url=default_arkor_cloud_api_url(credentials),
                                    credentials=credentials)
            self._client, self._owns_client = client, True
        if self._scope is None:
            assert credentials is not None
            state = ensure_project_state(client, credentials, self._cwd)
            self._scope = ProjectScope(state.org_slug, state.project_slug)
        return client, self._scope

    def start(self) -> str:
        """Create the job (uploading a local dataset first) and return its id; once only."""
        if self._job is not None:
            return self._job.id
        client, scope = self._connect()
        path = self.spec.upload_path()
        if path is None:
            source: Mapping[str, Any] = self.spec.dataset  # type: ignore[assignment]
        else:
            source = {"type": "upload", "uploadId": client.upload_dataset(scope, path).id}
        self._job = client.create_job(scope, name=self.spec.name, config=self.spec.config(source))
        return self._job.id

    def wait(self) -> TrainingResult:
        """Follow the job to its end, firing callbacks in order; a raising callback stops
        the wait and its exception propagates (the job itself keeps running)."""
        if self._result is not None:
            return self._result
        job_id = self.start()
        client, scope = self._connect()
        terminal: JobEvent | None = None
        stream = client.stream_events(job_id, scope, last_event_id=self._last_event_id,
                                      policy=self._policy)
        with contextlib.closing(stream):
            for event in stream:
                fired = self._observe(event)
                if fired is not None and fired[0] is not None:
                    fired[0](fired[1])
                if event.type in TERMINAL_EVENTS:
                    terminal = event
                    break
        fired = self._finish(client.get_job(job_id, scope), terminal)
        if fired is not None and fired[0] is not None:
            fired[0](fired[1])
        assert self._result is not None
        return self._result

    def cancel(self) -> TrainingJob | None:
        """Cancel the job on the server; nothing to do before ``start()``."""
        if self._job is None:
            return None
        client, scope = self._connect()
        return client.cancel_job(self._job.id, scope)


async def _call(callback: Callback | None, info: Info) -> None:
    if callback is not None:
        result = callback(info)
        if inspect.isawaitable(result):
            await result


class AsyncTrainer(_TrainerCore):
    """:class:`Trainer` with awaited methods; callbacks may be plain or ``async``."""

    def __init__(self, spec: TrainerSpec, *, client: AsyncCloudApiClient | None = None,
                 credentials: Creds | None = None, cwd: Path | None = None,
                 scope: ScopeLike | None = None, policy: ReconnectPolicy | None = None) -> None:
        super().__init__(spec, credentials=credentials, cwd=cwd, scope=scope, policy=policy)
        self._client = client
        self._owns_client = False

    async def __aenter__(self) -> AsyncTrainer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client, self._owns_client = None, False

    async def _connect(self) -> tuple[AsyncCloudApiClient, ProjectScope]:
        client = self._client
        credentials = self._credentials or (client.credentials if client else None)
        if credentials is None and (client is None or self._scope is None):
            credentials = await aensure_credentials(base_url=client.base_url if client else None)
        if client is None:
            assert credentials is not None
            client = AsyncCloudApiClient(base_url=default_arkor_cloud_api_url(credentials),
                                         credentials=credentials)
            self._client, self._owns_client = client, True
        if self._scope is None:
            assert credentials is not None
            state = await aensure_project_state(client, credentials, self._cwd)
            self._scope = ProjectScope(state.org_slug, state.project_slug)
        return client, self._scope

    async def start(self) -> str:
        if self._job is not None:
            return self._job.id
        client, scope = await self._connect()
        path = self.spec.upload_path()
        if path is None:
            source: Mapping[str, Any] = self.spec.dataset  # type: ignore[assignment]
        else:
            source = {"type": "upload", "uploadId": (await client.upload_dataset(scope, path)).id}
        self._job = await client.create_job(scope, name=self.spec.name,
                                            config=self.spec.config(source))
        return self._job.id

    async def wait(self) -> TrainingResult:
        if self._result is not None:
            return self._result
        job_id = await self.start()
        client, scope = await self._connect()
        terminal: JobEvent | None = None
        stream = client.stream_events(job_id, scope, last_event_id=self._last_event_id,
                                      policy=self._policy)
        try:
            async for event in stream:
                fired = self._observe(event)
                if fired is not None:
                    await _call(*fired)
                if event.type in TERMINAL_EVENTS:
                    terminal = event
                    break
        finally:
            await stream.aclose()
        fired = self._finish(await client.get_job(job_id, scope), terminal)
        if fired is not None:
            await _call(*fired)
        assert self._result is not None
        return self._result

    async def cancel(self) -> TrainingJob | None:
        if self._job is None:
            return None
        client, scope = await self._connect()
        return await client.cancel_job(self._job.id, scope)


class TrainerArguments(TrainerOptions, total=False):
    """What both factories take besides ``client``: the job, its callbacks, the connection,
    and every JobConfig option of :class:`TrainerOptions` (snake_case; only those given are
    sent, so the server's defaults apply to the rest)."""

    name: Required[str]
    dataset: Required[DatasetArg]
    model: str
    extra_config: Mapping[str, Any] | None
    on_started: Callable[[StartedInfo], Any] | None
    on_log: Callable[[LogInfo], Any] | None
    on_checkpoint: Callable[[CheckpointInfo], Any] | None
    on_completed: Callable[[CompletedInfo], Any] | None
    on_failed: Callable[[FailedInfo], Any] | None
    credentials: Creds | None
    cwd: Path | None
    scope: ScopeLike | None
    policy: ReconnectPolicy | None


CALLBACK_NAMES = ("on_started", "on_log", "on_checkpoint", "on_completed", "on_failed")
CONNECTION_NAMES = ("credentials", "cwd", "scope", "policy")
JOB_NAMES = ("name", "dataset", "model", "extra_config")


def _split(arguments: Mapping[str, Any]) -> tuple[TrainerSpec, dict[str, Any]]:
    """A factory's keywords as the spec and the connection (both factories take the same)."""
    options = {key: value for key, value in arguments.items()
               if key not in (*CALLBACK_NAMES, *CONNECTION_NAMES, *JOB_NAMES)}
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise TypeError(f"unknown trainer option(s) {', '.join(unknown)}; the options are the "
                        f"JobConfig fields: {', '.join(sorted(OPTION_NAMES))}")
    spec = TrainerSpec(
        name=arguments["name"], dataset=arguments["dataset"],
        model=arguments.get("model") or DEFAULT_MODEL, options=options,
        extra_config=dict(arguments.get("extra_config") or {}),
        callbacks={name: arguments.get(name) for name in CALLBACK_NAMES},
    )
    return spec, {name: arguments.get(name) for name in CONNECTION_NAMES}


def create_trainer(*, client: CloudApiClient | None = None,
                   **arguments: Unpack[TrainerArguments]) -> Trainer:
    """A :class:`Trainer` for one job (its keywords: :class:`TrainerArguments`). ``dataset`` is
    a local JSONL file (uploaded on ``start()``) or a ``datasetSource`` dict sent as is.
    Without ``client``/``credentials`` it signs in like the CLI; without ``scope`` it uses (or
    creates) ``.arkor/state.json`` in ``cwd``."""
    spec, connection = _split(arguments)
    return Trainer(spec, client=client, **connection)


def create_async_trainer(*, client: AsyncCloudApiClient | None = None,
                         **arguments: Unpack[TrainerArguments]) -> AsyncTrainer:
    """:func:`create_trainer` for asyncio: the same keywords; callbacks may be ``async``."""
    spec, connection = _split(arguments)
    return AsyncTrainer(spec, client=client, **connection)
