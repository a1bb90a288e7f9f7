"""Rate limits: what a deployment or key allows, and the counters every process shares.

:class:`Limits` is read from a deployment's or a key's row (None: unlimited). The counters
live in ``rate_limit_windows`` (requests admitted and tokens charged, per bucket and window)
and ``rate_limit_leases`` (the calls in progress, per bucket). :class:`SqlCounters` keeps
them on PostgreSQL for every server process of an installation: an admission takes a
transaction-scoped advisory lock per bucket (in name order, so two admissions never wait on
each other in a circle), reads the window and the live leases, and either writes the request
and its lease or rolls back, so a limit of N admits N in total across processes. Charges
and releases are single atomic statements and take no lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import Engine, delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import Insert, insert

from arkor.store.db import advisory_lock_key
from arkor.store.tables import Deployment, DeploymentKey, RateLimitLease, RateLimitWindow

REQUESTS, TOKENS, CONCURRENT = "requests", "tokens", "concurrent"


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.requests_per_minute, self.tokens_per_minute,
                                           self.concurrent_requests))

    @property
    def windowed(self) -> bool:
        """Whether the bucket counts per window (requests or tokens per minute)."""
        return self.requests_per_minute is not None or self.tokens_per_minute is not None


UNLIMITED = Limits()


def limits_of(row: Deployment | DeploymentKey) -> Limits:
    return Limits(row.requests_per_minute, row.tokens_per_minute, row.concurrent_requests)


@dataclass(frozen=True)
class Bucket:
    """One set of limits a call must be within: ``name`` is ``deployment:<id>`` or
    ``key:<deployment id>:<key id>``."""

    name: str
    limits: Limits


class Count(NamedTuple):
    """A bucket's window as an admission saw it: requests before this one, tokens so far
    (a tuple: one is made per bucket per call)."""

    requests: int
    tokens: int


class Verdict(NamedTuple):
    """``refused`` is None when admitted, else the bucket and which limit (``requests``,
    ``tokens`` or ``concurrent``) refused."""

    counts: dict[str, Count]
    refused: tuple[Bucket, str] | None = None


def judge(limits: Limits, requests: int, tokens: int, live: int) -> str | None:
    """Which of ``limits`` one more call would break, if any, after ``requests`` and
    ``tokens`` in the window and ``live`` calls in progress."""
    if limits.requests_per_minute is not None and requests >= limits.requests_per_minute:
        return REQUESTS
    if limits.tokens_per_minute is not None and tokens >= limits.tokens_per_minute:
        return TOKENS
    if limits.concurrent_requests is not None and live >= limits.concurrent_requests:
        return CONCURRENT
    return None


class SqlCounters:
    """The shared counters on PostgreSQL (an :class:`arkor.edge.rate_limit_stores.Counters`).
    Times are the callers' (seconds and milliseconds since the epoch), so every process must
    keep its clock in sync (NTP)."""

    blocking = True

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def admit(self, buckets: Sequence[Bucket], window_start: int, lease: str,
              now_ms: int, expires_ms: int) -> Verdict:
        counts: dict[str, Count] = {}
        ordered = sorted(buckets, key=lambda b: b.name)
        with self._engine.connect() as conn, conn.begin() as transaction:
            for bucket in ordered:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                             {"key": advisory_lock_key(bucket.name)})
                row = conn.execute(select(RateLimitWindow.requests, RateLimitWindow.tokens).where(
                    RateLimitWindow.bucket == bucket.name,
                    RateLimitWindow.window_start == window_start)).first()
                count = Count(row[0], row[1]) if row is not None else Count(0, 0)
                live = 0
                if bucket.limits.concurrent_requests is not None:
                    conn.execute(delete(RateLimitLease).where(
                        RateLimitLease.bucket == bucket.name,
                        RateLimitLease.expires_at <= now_ms))
                    live = conn.execute(select(func.count()).select_from(RateLimitLease).where(
                        RateLimitLease.bucket == bucket.name)).scalar_one()
                refused = judge(bucket.limits, count.requests, count.tokens, live)
                counts[bucket.name] = count
                if refused is not None:
                    transaction.rollback()
                    return Verdict(counts, (bucket, refused))
            for bucket in ordered:
                if bucket.limits.windowed:
                    conn.execute(_add(bucket.name, window_start, requests=1, tokens=0))
                if bucket.limits.concurrent_requests is not None:
                    conn.execute(insert(RateLimitLease).values(
                        bucket=bucket.name, lease=lease, expires_at=expires_ms))
        return Verdict(counts)

    def end(self, charge: Sequence[str], window_start: int, tokens: int,
            release: Sequence[str], lease: str) -> None:
        """Add a finished call's tokens to the ``charge`` buckets and free its lease in the
        ``release`` ones, in one transaction."""
        if not charge and not release:
            return
        with self._engine.begin() as conn:
            for name in sorted(charge):
                conn.execute(_add(name, window_start, requests=0, tokens=tokens))
            if release:
                conn.execute(delete(RateLimitLease).where(
                    RateLimitLease.bucket.in_(list(release)), RateLimitLease.lease == lease))

    def renew(self, held: Sequence[tuple[str, str]], now_ms: int, expires_ms: int) -> None:
        """Push back the expiry of ``(bucket, lease)`` pairs still in progress."""
        if held:
            with self._engine.begin() as conn:
                conn.execute(update(RateLimitLease).where(
                    tuple_(RateLimitLease.bucket, RateLimitLease.lease).in_(list(held))
                ).values(expires_at=expires_ms))

    def sweep(self, before_window_start: int, now_ms: int) -> None:
        """Forget windows that started before ``before_window_start`` and expired leases."""
        with self._engine.begin() as conn:
            conn.execute(delete(RateLimitWindow).where(
                RateLimitWindow.window_start < before_window_start))
            conn.execute(delete(RateLimitLease).where(RateLimitLease.expires_at <= now_ms))


def _add(name: str, window_start: int, *, requests: int, tokens: int) -> Insert:
    statement = insert(RateLimitWindow).values(bucket=name, window_start=window_start,
                                               requests=requests, tokens=tokens)
    return statement.on_conflict_do_update(
        index_elements=[RateLimitWindow.bucket, RateLimitWindow.window_start],
        set_={"requests": RateLimitWindow.requests + requests,
              "tokens": RateLimitWindow.tokens + tokens})
