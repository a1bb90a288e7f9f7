"""Usage metering: each call counted into its hour's bucket (per deployment and key, or per
project for the control plane's ``/v1/inference/chat``), added to by every server process, read
back as hourly or daily buckets with latency percentiles.

Latency percentiles come from a fixed histogram (:data:`LATENCY_BOUNDS_MS`): a percentile is
the upper bound of the bucket it falls in (the last bucket's: the largest latency seen there
is not kept, so it reads as the previous bound times two).
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from arkor.store.tables import Deployment, InferenceUsageBucket, Project, UsageBucket

LATENCY_BOUNDS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000)


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


COUNTED = ("requests", "prompt_tokens", "completion_tokens", "errors_4xx", "errors_5xx",
           "cancelled", "latency_ms_sum")
"""The counters a bucket, a flush's tally and a summary share, added field by field."""


def add_counts(into: object, source: object) -> None:
    for name in COUNTED:
        setattr(into, name, getattr(into, name) + getattr(source, name))


@dataclass
class Counts:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    cancelled: int = 0
    latency_ms_sum: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))


@dataclass(kw_only=True)
class Tally(Counts):
    """What one flush adds to one bucket."""

    project_id: str

    def add(self, http_status: int, cancelled: bool, prompt_tokens: int,
            completion_tokens: int, latency_ms: int, /) -> None:
        self.requests += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if http_status >= 400:
            if http_status >= 500:
                self.errors_5xx += 1
            elif http_status != 499:
                self.errors_4xx += 1
        self.cancelled += cancelled
        self.latency_ms_sum += latency_ms
        # The first bound at or above the latency (past the last: the overflow bucket).
        self.histogram[bisect_left(LATENCY_BOUNDS_MS, latency_ms)] += 1


BucketKey = tuple[str, str, datetime]  # deployment id, key id ("" for none), hour
InferenceKey = tuple[str, datetime]  # project id, hour (the control plane's inference route)
Bucket = UsageBucket | InferenceUsageBucket
B = TypeVar("B", UsageBucket, InferenceUsageBucket)
_EMPTY: dict[str, int | str] = {**dict.fromkeys(COUNTED, 0), "latency_histogram": "[]"}


def add_tallies(session: Session, tallies: dict[BucketKey, Tally]) -> int:
    """Add to the deployments' buckets (keyed by deployment, key and hour). Returns the calls
    not counted: those of deployments deleted since (their buckets went with them)."""
    return _add_all(session, UsageBucket, tallies, ("deployment_id", "key_id", "start"),
                    Deployment)


def add_inference_tallies(session: Session, tallies: dict[InferenceKey, Tally]) -> int:
    """The same for the control plane's inference route, one bucket per project and hour."""
    return _add_all(session, InferenceUsageBucket, tallies, ("project_id", "start"), Project)


def _add_all(session: Session, model: type[B], tallies: Mapping[tuple[Any, ...], Tally],
             key_columns: tuple[str, ...], owner: type[Deployment | Project]) -> int:
    """Add each tally to its bucket, read by primary key with a row lock (concurrent writers
    on PostgreSQL wait for each other; SQLite has one writer). A new bucket is made only while
    its owner (the key's first column) exists: a deployment deleted since its calls takes no
    new bucket, and its counts do not make the others' fail."""
    gone = 0
    for key, tally in sorted(tallies.items(), key=lambda item: item[0]):
        row = session.get(model, key, with_for_update=True)
        if row is None:
            if session.get(owner, key[0]) is None:
                gone += tally.requests
                continue
            row = model(**{"project_id": tally.project_id, **dict(zip(key_columns, key,
                                                                        strict=True)),
                           **_EMPTY})
            session.add(row)
        _add(session, row, tally)
    return gone


def _add(session: Session, row: Bucket, tally: Tally) -> None:
    add_counts(row, tally)
    row.latency_histogram = json.dumps(merge(json.loads(row.latency_histogram),
                                             tally.histogram))
    session.flush()


def merge(a: list[int], b: list[int]) -> list[int]:
    size = max(len(a), len(b))
    return [(a[i] if i < len(a) else 0) + (b[i] if i < len(b) else 0) for i in range(size)]


def percentile(histogram: list[int], q: float) -> int | None:
    total = sum(histogram)
    if not total:
        return None
    wanted, seen = q * total, 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= wanted:
            return (LATENCY_BOUNDS_MS[index] if index < len(LATENCY_BOUNDS_MS)
                    else LATENCY_BOUNDS_MS[-1] * 2)
    return LATENCY_BOUNDS_MS[-1] * 2


@dataclass(kw_only=True)
class Summary(Counts):
    """Buckets added together: an hour, a day, or a whole span."""

    start: datetime

    def take(self, row: Bucket) -> None:
        add_counts(self, row)
        self.histogram = merge(self.histogram, json.loads(row.latency_histogram))


def read_buckets(session: Session, *, since: datetime, until: datetime,
                 deployment_id: str | None = None, project_id: str | None = None,
                 key_id: str | None = None) -> list[UsageBucket]:
    query = select(UsageBucket).where(UsageBucket.start >= hour_of(since),
                                      UsageBucket.start < until)
    if deployment_id is not None:
        query = query.where(UsageBucket.deployment_id == deployment_id)
    if project_id is not None:
        query = query.where(UsageBucket.project_id == project_id)
    if key_id is not None:
        query = query.where(UsageBucket.key_id == key_id)
    return list(session.execute(query.order_by(UsageBucket.start)).scalars())


def read_inference_buckets(session: Session, *, since: datetime, until: datetime,
                           project_id: str) -> list[InferenceUsageBucket]:
    """A project's calls to the control plane's inference route."""
    return list(session.execute(select(InferenceUsageBucket).where(
        InferenceUsageBucket.project_id == project_id,
        InferenceUsageBucket.start >= hour_of(since), InferenceUsageBucket.start < until,
    ).order_by(InferenceUsageBucket.start)).scalars())


def summarize(rows: Iterable[Bucket], granularity: str) -> list[Summary]:
    """Hourly rows as ``hour`` or ``day`` buckets (UTC), oldest first; empty ones left out."""
    out: dict[datetime, Summary] = {}
    for row in rows:
        start = row.start if granularity == "hour" else row.start.replace(hour=0)
        out.setdefault(start, Summary(start=start)).take(row)
    return [out[start] for start in sorted(out)]


def step(granularity: str) -> timedelta:
    return timedelta(hours=1) if granularity == "hour" else timedelta(days=1)
