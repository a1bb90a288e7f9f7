"""The composition root: the control plane and the edge, side by side on one ASGI app.

``create_app(settings)`` builds each part once: the data directory, the database (migrated),
the job supervisor, the engine provider, key usage, the rate limiter, the edge app and the
control plane. It
owns their lifespan and puts the ASGI middleware around both apps: ``CustomDomainHosts`` (a
verified custom domain's Host marked for its deployment) → ``AccessLog`` → ``HostGuard`` →
``BodyGuard`` → ``EdgeRouter``. It also runs the periodic re-check of custom domains' TXT
records (:class:`~arkor.cloud.domains.DomainChecker`). ``arkor.cloud`` and ``arkor.edge`` never
import each other; only this module imports both, and it hands the control plane the edge's
serving for ``/v1/inference/chat`` (:class:`EngineChat`).

With ``ARKOR_METRICS_PORT`` or ``ARKOR_METRICS_TOKEN`` set it also builds the app's metrics
(:mod:`arkor.observability`): the recorder hands them each closed call, ``MetricsScope`` (outside
``AccessLog``) lets a rate limiter count into them, and ``/metrics`` is a route of the app or
the operator's listener, started and stopped with the rest.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from arkor.cloud.app import create_control_plane
from arkor.cloud.domains import ChallengeResolver, DomainChecker
from arkor.cloud.errors import ApiError
from arkor.cloud.files import prepare_data_dir
from arkor.cloud.retention import RunSweeper
from arkor.cloud.settings import Settings
from arkor.cloud.supervisor import JobSupervisor
from arkor.edge import chat, runs
from arkor.edge.app import EdgeApp
from arkor.edge.directory import DeploymentDirectory
from arkor.edge.domains import CustomDomainHosts, DomainDirectory
from arkor.edge.errors import WireError
from arkor.edge.keys import KeyUsage
from arkor.edge.rate_limit_stores import Counters, MemoryCounters, RedisCounters
from arkor.edge.rate_limits import LimitedEdge, RateLimiter
from arkor.edge.routing import EdgeRouter
from arkor.edge.runs import Recorder
from arkor.edge.serving import CLIENT_CLOSED_REQUEST, EngineProvider, OutputLimits
from arkor.edge.stored import StoredCompletions
from arkor.engine.base import AdapterRef, Engine
from arkor.middleware.access_log import AccessLog
from arkor.middleware.guards import BodyGuard, HostGuard
from arkor.observability.endpoint import MetricsListener, serve_on
from arkor.observability.metrics import Metrics, MetricsScope
from arkor.store.db import Database, migrate
from arkor.store.rate_limits import SqlCounters

INFERENCE_ROUTE = "inference.chat"
"""The route a call to the control plane's ``/v1/inference/chat`` is metered under."""


def local_engine_factory(settings: Settings) -> Callable[[], Engine]:
    """The engine a server runs: the local one, behind the upstream one for the base models
    that vLLM servers serve (``ARKOR_UPSTREAMS``)."""

    def build_local() -> Engine:
        from arkor.engine.local import LocalEngine

        return LocalEngine(
            settings.registry, models_dir=settings.models_dir,
            max_batch_size=settings.engine_max_batch, max_queue=settings.engine_max_queue,
            max_loaded_adapters=settings.engine_max_adapters,
            precision=settings.engine_precision,
            prefix_cache_mb=settings.engine_prefix_cache_mb,
        )

    def build() -> Engine:
        from arkor.engine.upstream import SplitEngine, UpstreamEngine

        return SplitEngine(UpstreamEngine(settings.registry.upstreams), build_local)

    return build if settings.registry.upstreams else build_local


def rate_limit_counters(settings: Settings, db: Database) -> Counters:
    """Redis when ``ARKOR_REDIS_URL`` is set, else the database on PostgreSQL (several
    processes share it), else this process's memory (SQLite runs one process)."""
    if settings.redis_url:
        return RedisCounters(settings.redis_url, window_s=settings.rate_limit_window_s)
    if db.is_postgres:
        return SqlCounters(db.engine)
    return MemoryCounters()


class EngineChat:
    """The control plane's :class:`~arkor.cloud.deps.ChatAnswerer`: a chat answered by the
    edge's serving, as a deployment answers it, with the edge's refusals as ``ApiError``.

    Each call is metered as a deployment's is: a run tap of its own (no deployment, never
    kept as a run), fed by the engine rows, closed when its response has been sent (or the
    client left) and handed to the recorder, which counts it into the project's inference
    usage. A refused call is counted with its status."""

    def __init__(self, engines: EngineProvider, recorder: Recorder) -> None:
        self.engines = engines
        self.recorder = recorder

    async def __call__(self, request: Request, body: dict[str, Any], *, project_id: str,
                       base_model: str, adapter: AdapterRef | None, model: str) -> Response:
        tap = runs.RunTap(
            deployment_id=None, project_id=project_id, route=INFERENCE_ROUTE, keep=False,
            request_id=request.headers.get("x-request-id") or f"req_{uuid.uuid4().hex}",
            key_id=None, key_prefix=None, base_model=base_model,
            adapter=adapter.key if adapter else None)
        token = runs.current.set(tap)
        status: int | None = 500  # None once there is an answer to send
        try:
            response = await chat.serve(request.receive, self.engines, body,
                                        base_model=base_model, adapter=adapter, model=model)
            status = None
        except WireError as exc:
            status, tap.error = exc.status, exc.message
            raise ApiError(exc.status, exc.message, headers=exc.headers or None) from exc
        except asyncio.CancelledError:
            status = CLIENT_CLOSED_REQUEST
            raise
        except Exception:
            tap.error = "Internal error"
            raise
        finally:
            runs.current.reset(token)
            if status is not None:
                tap.close(status, stream=False)
                self.recorder.submit(tap)
        return runs.Metered(response, tap, self.recorder)


def create_app(settings: Settings, *, engine: Engine | None = None) -> FastAPI:
    """The control plane with the edge in front of it, on one ASGI app.

    ``engine`` replaces the local engine (made on first use otherwise).
    """
    prepare_data_dir(settings)
    db = Database(settings.db_url)
    migrate(db.engine)
    supervisor = JobSupervisor(db, settings)
    engines = EngineProvider(
        None if engine else local_engine_factory(settings), engine,
        limits=OutputLimits(settings.default_max_tokens, settings.max_tokens_cap,
                            settings.max_n),
    )
    usage = KeyUsage(db)
    metrics = Metrics(db=db, runs_dropped=lambda: recorder.dropped,
                      engine=lambda: engines.started) if settings.serves_metrics else None
    listener = MetricsListener(metrics, settings) if metrics and settings.metrics_port else None
    recorder = Recorder(db, observer=metrics.observe_call if metrics else None)
    sweeper = RunSweeper(db, grace=timedelta(days=settings.slug_grace_days))
    domain_checker = DomainChecker(db, ChallengeResolver.from_settings(settings),
                                   interval_s=settings.domain_check_interval_s)
    edge = EdgeApp(DeploymentDirectory(db, menu=settings.registry.menu), usage, engines, recorder,
                   StoredCompletions(db, recorder))
    limiter = RateLimiter(rate_limit_counters(settings, db),
                          window_s=settings.rate_limit_window_s,
                          failure=settings.rate_limit_failure)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if listener is not None:
            listener.start()
        db.listen_for_changes()
        supervisor.start()
        usage.start()
        recorder.start()
        sweeper.start()
        domain_checker.start()
        limiter.start()
        try:
            yield
        finally:
            limiter.stop()
            domain_checker.stop()
            sweeper.stop()
            recorder.stop()
            usage.stop()
            supervisor.stop()
            await engines.close()
            if listener is not None:
                listener.stop()
            db.dispose()

    app = create_control_plane(settings, db=db, supervisor=supervisor,
                               chat=EngineChat(engines, recorder), lifespan=lifespan)
    app.state.engines = engines
    app.state.edge = edge
    app.state.recorder = recorder
    app.state.sweeper = sweeper
    app.state.domain_checker = domain_checker
    app.state.rate_limiter = limiter
    app.state.metrics = metrics
    if metrics is not None:
        serve_on(app, metrics, settings)
    # The last added runs first: mark custom domains, log, check the Host, bound the body,
    # then route.
    app.add_middleware(EdgeRouter, edge=LimitedEdge(edge, limiter),
                       edge_domain=settings.edge_domain)
    app.add_middleware(BodyGuard, settings=settings)
    app.add_middleware(HostGuard, settings=settings)
    app.add_middleware(AccessLog, edge_domain=settings.edge_domain)
    app.add_middleware(CustomDomainHosts, domains=DomainDirectory(db),
                       edge_domain=settings.edge_domain)
    if metrics is not None:
        app.add_middleware(MetricsScope, metrics=metrics)
    return app
