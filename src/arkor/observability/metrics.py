"""One server's Prometheus metrics, in a registry of its own (never prometheus_client's global
one, so several apps in one process keep apart).

Counted as calls happen: the edge's :class:`~arkor.edge.runs.Recorder` hands each closed run
tap to :meth:`Metrics.observe_call`, and a rate limiter calls :func:`count_rate_limited`.

    arkor_edge_requests_total{deployment,route,status,outcome}   status: the HTTP code
    arkor_edge_request_duration_seconds{deployment,route}        histogram
    arkor_edge_tokens_total{deployment,kind}                     kind: prompt | completion
    arkor_edge_rate_limited_total{deployment,limit}

Read when scraped (:class:`ScrapeCollector`), so no request pays for them:

    arkor_runs_dropped_total                       the recorder's drops
    arkor_jobs{state}                              from the database
    arkor_deployment_info{deployment,slug}         from the database, always 1
    arkor_engine_batch_size{model}                 rows decoding now, per base model
    arkor_engine_queue_depth{model}                requests waiting for a batch slot
    arkor_engine_loaded_adapters{model}
    arkor_engine_adapter_loads_total{model}, arkor_engine_adapter_evictions_total{model}

``deployment`` is the deployment's id, not its slug: an id is never reused, while a deleted
deployment's slug passes to another project after its grace, which would join two
deployments' series. ``arkor_deployment_info`` maps ids to slugs. Series exist per deployment
that was called since the process started, so they are bounded by the deployments; key ids,
client addresses and models named in requests are never labels.
"""

from __future__ import annotations

import contextvars
import gc
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, get_args, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Receive, Scope, Send

from arkor.contract.models import JobStatus
from arkor.store.db import Database
from arkor.store.tables import Deployment, Job

log = logging.getLogger("arkor.metrics")
MODEL_LABEL = "model"  # the engine's series: the base model's registered name
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Seconds: a short completion answers in tens of milliseconds, a long stream in minutes."""


class Call(Protocol):
    """A call the edge served, closed (:class:`arkor.edge.runs.RunTap`). The recorder hands
    over a deployment's calls only, never the control plane's inference route (None)."""

    deployment_id: str | None
    route: str
    http_status: int
    started: float
    ended: float

    def outcome(self) -> str: ...

    def usage(self) -> tuple[int, int]: ...


class ModelLoad(Protocol):
    """One base model's moment (:class:`arkor.engine.local.engine.BaseModelLoad`)."""

    @property
    def running(self) -> int: ...

    @property
    def waiting(self) -> int: ...

    @property
    def adapters_loaded(self) -> int: ...

    @property
    def adapter_loads(self) -> int: ...

    @property
    def adapter_evictions(self) -> int: ...

    @property
    def precision(self) -> str: ...


@runtime_checkable
class ReportsLoad(Protocol):
    """An engine that says what each base model is doing (the local engine does)."""

    def load_report(self) -> Mapping[str, ModelLoad]: ...


class Metrics:
    """The app's registry, its counters, and the collector read at scrape time.

    ``runs_dropped`` and ``engine`` are read only when scraped; ``engine`` answers None until
    the engine has started (a scrape never starts one).
    """

    def __init__(self, *, db: Database, runs_dropped: Callable[[], int],
                 engine: Callable[[], object | None]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "arkor_edge_requests", "Calls a deployment served, by HTTP status and outcome "
            "(completed, failed, cancelled).", ("deployment", "route", "status", "outcome"),
            registry=self.registry)
        self.duration = Histogram(
            "arkor_edge_request_duration_seconds", "Time from a call's arrival to the end of "
            "its answer (its last streamed byte).", ("deployment", "route"),
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tokens = Counter(
            "arkor_edge_tokens", "Tokens the engine read (prompt) and generated (completion).",
            ("deployment", "kind"), registry=self.registry)
        self.rate_limited = Counter(
            "arkor_edge_rate_limited", "Calls refused by a deployment's rate limit, by limit.",
            ("deployment", "limit"), registry=self.registry)
        self.registry.register(ScrapeCollector(db, runs_dropped, engine))
        GCCollector(registry=self.registry)  # python_gc_*: collections by generation
        self._children: dict[tuple[Any, ...], Any] = {}

    def observe_call(self, call: Call) -> None:
        """Count one closed call. Never raises: a call is never hurt by its metrics."""
        try:
            deployment, route = call.deployment_id, call.route
            self._child(self.requests, deployment, route, str(call.http_status),
                        call.outcome()).inc()
            self._child(self.duration, deployment, route).observe(
                max(0.0, call.ended - call.started))
            prompt, completion = call.usage()
            self._child(self.tokens, deployment, "prompt").inc(prompt)
            self._child(self.tokens, deployment, "completion").inc(completion)
        except Exception:
            log.exception("could not count a call into the metrics")

    def _child(self, metric: Any, *labels: Any) -> Any:
        """``metric.labels(*labels)``, remembered: a call's hot path looks a dict up instead
        of re-validating the labels under the metric's lock (a few µs per call)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def count_rate_limited(self, deployment: str, limit: str) -> None:
        self.rate_limited.labels(deployment, limit).inc()


class ScrapeCollector:
    """What the server holds, read each time Prometheus scrapes (on a worker thread)."""

    def __init__(self, db: Database, runs_dropped: Callable[[], int],
                 engine: Callable[[], object | None]) -> None:
        self._db = db
        self._runs_dropped = runs_dropped
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "arkor_runs_dropped", "Runs not recorded: the recorder's buffer was full, or the "
            "database refused them.", value=self._runs_dropped())
        yield GaugeMetricFamily(
            "arkor_gc_frozen_objects", "Objects moved out of the garbage collector's reach "
            "once the server and its models were loaded (arkor.heap).",
            value=gc.get_freeze_count())
        yield from self._database()
        yield from self._engine_load()

    def _database(self) -> Iterator[Metric]:
        try:
            with self._db.session() as session:
                counts = {state: count for state, count in session.execute(
                    select(Job.status, func.count()).group_by(Job.status))}
                deployments = list(session.execute(select(Deployment.id, Deployment.slug)))
        except SQLAlchemyError:
            log.warning("metrics: could not read jobs and deployments", exc_info=True)
            return
        jobs = GaugeMetricFamily("arkor_jobs", "Training jobs by state.", labels=["state"])
        known = get_args(JobStatus)
        for state in (*known, *sorted(set(counts) - set(known))):
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        info = InfoMetricFamily("arkor_deployment", "Each deployment's slug, by id.",
                                labels=["deployment"])
        for deployment_id, slug in deployments:
            info.add_metric([deployment_id], {"slug": slug})
        yield info

    def _engine_load(self) -> Iterator[Metric]:
        engine = self._engine()
        if not isinstance(engine, ReportsLoad):
            return
        report = engine.load_report()
        families: list[tuple[str, GaugeMetricFamily | CounterMetricFamily]] = [
            ("running", GaugeMetricFamily("arkor_engine_batch_size",
                                          "Rows decoding together now.", labels=[MODEL_LABEL])),
            ("waiting", GaugeMetricFamily("arkor_engine_queue_depth",
                                          "Requests waiting for a batch slot.",
                                          labels=[MODEL_LABEL])),
            ("adapters_loaded", GaugeMetricFamily("arkor_engine_loaded_adapters",
                                                  "LoRA adapters attached now.",
                                                  labels=[MODEL_LABEL])),
            ("adapter_loads", CounterMetricFamily("arkor_engine_adapter_loads",
                                                  "LoRA adapters attached so far.",
                                                  labels=[MODEL_LABEL])),
            ("adapter_evictions", CounterMetricFamily(
                "arkor_engine_adapter_evictions",
                "LoRA adapters detached to make room (least recently used first).",
                labels=[MODEL_LABEL])),
        ]
        loaded = InfoMetricFamily("arkor_engine_model", "Each loaded base model's precision "
                                  "(what auto came to on this machine).", labels=[MODEL_LABEL])
        for model, load in sorted(report.items()):
            for field, family in families:
                family.add_metric([model], getattr(load, field))
            loaded.add_metric([model], {"precision": load.precision})
        for _, family in families:
            yield family
        yield loaded


_current: contextvars.ContextVar[Metrics | None] = contextvars.ContextVar(
    "arkor_metrics", default=None)


def count_rate_limited(deployment: str, limit: str) -> None:
    """Count a call that a deployment's rate limit refused, into the metrics of the app
    serving the request (nothing where metrics are off, or outside a request).

    ``deployment`` is the deployment's id (``ServedDeployment.id``), never its slug, also
    when a key's own limit refused the call; ``limit`` names which limit, from a fixed set
    (``requests``, ``tokens``, ``concurrent``: :mod:`arkor.store.rate_limits`), never a key,
    an address or anything else a caller chooses.
    """
    metrics = _current.get()
    if metrics is not None:
        metrics.count_rate_limited(deployment, limit)


class MetricsScope:
    """ASGI: every request of the app sees its :class:`Metrics` (:func:`count_rate_limited`)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _current.set(self.metrics)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)
