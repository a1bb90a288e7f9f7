"""Rate limits at the edge: requests and tokens per minute and concurrent requests, per
deployment and per key, checked before the engine is touched.

:class:`LimitedEdge` wraps the edge app. :func:`admit`, called by the edge app once the key
is known and before the body is read, asks the :class:`RateLimiter` for the call's buckets
(the deployment's limits and the key's; none at all costs nothing). Over a limit is a 429 in
OpenAI's shape (``type`` ``requests`` or ``tokens``, ``code`` ``rate_limit_exceeded``) with
``Retry-After``; an admitted call's response carries OpenAI's ``x-ratelimit-*`` headers, and
when it ends (answered, failed, or the client gone) its tokens (prompt + completion, as the
engine counted them for its run, :mod:`arkor.edge.runs`) are charged to the window and its
concurrent-request slot is given back.

Windows are fixed: ``window_s`` seconds (60) from the epoch, on each server's clock. A call is
admitted while every bucket has had fewer requests than its limit in the window, has been
charged fewer tokens than its limit, and holds fewer leases (calls in progress) than its
concurrent limit. Leases last ``lease_s`` and are renewed while the call lasts, so a process
that dies frees its slots within one lease. When the counters cannot be reached,
``failure="open"`` admits (logging a warning at most once a minute) and ``"closed"`` answers
503.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arkor.edge import runs
from arkor.edge.directory import ServedDeployment
from arkor.edge.errors import WireError
from arkor.edge.rate_limit_stores import Counters, MemoryCounters
from arkor.observability.metrics import count_rate_limited
from arkor.store.rate_limits import CONCURRENT, REQUESTS, TOKENS, Bucket, Count, Verdict

log = logging.getLogger("arkor.edge")
SCOPE_KEY = "arkor.rate_limits"
FAILURE_POLICIES: Final = ("open", "closed")
DEFAULT_WINDOW_S = 60
DEFAULT_LEASE_S = 60.0
WARN_EVERY_S = 60.0
WINDOWS_KEPT = 2
T = TypeVar("T")


def buckets_for(served: ServedDeployment, key_id: str | None) -> list[Bucket]:
    """The limits a call through ``key_id`` must be within: its deployment's, its key's."""
    found = []
    if served.limits.any:
        found.append(Bucket(f"deployment:{served.id}", served.limits))
    key_limits = served.key_limits.get(key_id) if key_id is not None else None
    if key_limits is not None and key_limits.any:
        found.append(Bucket(f"key:{served.id}:{key_id}", key_limits))
    return found


RawHeader = tuple[bytes, bytes]
Shown = tuple[str, int, RawHeader]  # a bucket, its limit, and its x-ratelimit-limit-* header
_REQUEST_RAW, _TOKEN_RAW = (tuple(f"x-ratelimit-{part}-{kind}".encode("latin-1")
                                  for part in ("limit", "remaining", "reset"))
                            for kind in (REQUESTS, TOKENS))


@dataclass(frozen=True)
class Plan:
    """What a call through one key of one deployment is checked against, worked out once per
    loaded deployment (:meth:`RateLimiter.plan`): its buckets, those its tokens are charged
    to, those it holds a lease in, and the limits its headers report."""

    buckets: tuple[Bucket, ...]
    charged: tuple[str, ...] = ()
    leased: tuple[str, ...] = ()
    requests: tuple[Shown, ...] = ()  # the buckets with a limit of requests per minute
    tokens: tuple[Shown, ...] = ()  # ... of tokens per minute
    one: Bucket | None = None  # the plan's bucket when it has one (the deployment's or the key's)

    def headers(self, requests: int, tokens: int, reset_s: float) -> list[RawHeader]:
        """:func:`limit_headers` of a plan of one bucket (:attr:`one`) whose window has
        counted ``requests`` and ``tokens``, this call included (written out: it runs for
        every call of a limited key)."""
        headers: list[RawHeader] = []
        if self.requests or self.tokens:
            resets = _RESETS.get(math.ceil(reset_s * 100)) or _resets(reset_s)
            if self.requests:
                _, limit, shown = self.requests[0]
                headers += (shown, (_REQUEST_RAW[1], b"%d" % max(0, limit - requests)),
                            resets[0])
            if self.tokens:
                _, limit, shown = self.tokens[0]
                headers += (shown, (_TOKEN_RAW[1], b"%d" % max(0, limit - tokens)), resets[1])
        return headers

    @classmethod
    def of(cls, buckets: Sequence[Bucket]) -> Plan:
        return cls(
            tuple(buckets),
            charged=tuple(b.name for b in buckets if b.limits.tokens_per_minute is not None),
            leased=tuple(b.name for b in buckets if b.limits.concurrent_requests is not None),
            requests=tuple((b.name, limit, (_REQUEST_RAW[0], b"%d" % limit)) for b in buckets
                           if (limit := b.limits.requests_per_minute) is not None),
            tokens=tuple((b.name, limit, (_TOKEN_RAW[0], b"%d" % limit)) for b in buckets
                         if (limit := b.limits.tokens_per_minute) is not None),
            one=buckets[0] if len(buckets) == 1 else None)


NO_PLAN = Plan(())
MAX_PLANS = 10_000


def duration(seconds: float) -> str:
    """OpenAI's ``x-ratelimit-reset-*`` form: ``250ms``, ``12.5s``, ``1m30s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.2f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


_RESETS: dict[int, tuple[RawHeader, RawHeader]] = {}


def reset_header(seconds: float) -> bytes:
    """:func:`duration` to the hundredth of a second, as a header's value."""
    return _resets(seconds)[0][1]


def _resets(seconds: float) -> tuple[RawHeader, RawHeader]:
    """The ``x-ratelimit-reset-requests`` and ``-tokens`` headers of a reset ``seconds``
    away, rounded up to the hundredth (each call shows one; there are only so many hundredths
    in a window, so each is made once)."""
    hundredths = math.ceil(seconds * 100)  # never earlier than the window's end
    shown = _RESETS.get(hundredths)
    if shown is None:
        if len(_RESETS) > 100_000:
            _RESETS.clear()
        value = duration(hundredths / 100).encode("latin-1")
        shown = _RESETS[hundredths] = ((_REQUEST_RAW[2], value), (_TOKEN_RAW[2], value))
    return shown


class Admission:
    """An admitted call: the headers its answer carries and what to settle when it ends
    (its plan's buckets its tokens are charged to, and those it holds a lease in)."""

    __slots__ = ("lease", "plan", "raw_headers", "tap")

    def __init__(self, plan: Plan, lease: str, raw_headers: list[RawHeader]) -> None:
        self.plan, self.lease = plan, lease
        self.raw_headers = raw_headers
        self.tap: runs.RunTap | None = None


LEASE_PREFIX = f"{uuid.uuid4().hex[:16]}-"  # unique per process; a counter within it
_LEASE_SERIAL = itertools.count()


@dataclass
class RateLimiter:
    counters: Counters
    window_s: int = DEFAULT_WINDOW_S
    failure: str = "open"
    lease_s: float = DEFAULT_LEASE_S
    clock: Callable[[], float] = time.time
    _held: dict[str, tuple[str, ...]] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _warned_at: float = field(default=-math.inf, init=False)
    _plans: dict[tuple[str, str | None], tuple[ServedDeployment, Plan]] = field(
        default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.failure not in FAILURE_POLICIES:
            raise ValueError(f"rate_limit_failure must be open or closed, not {self.failure!r}")
        if self.window_s < 1:
            raise ValueError("rate_limit_window_s must be at least 1")

    def plan(self, served: ServedDeployment, key_id: str | None) -> Plan:
        """The plan of calls through ``key_id`` to ``served``, remembered for as long as this
        loaded deployment is the one served (a change to it loads a new one)."""
        cache_key = (served.id, key_id)
        cached = self._plans.get(cache_key)
        if cached is not None and cached[0] is served:
            return cached[1]
        buckets = buckets_for(served, key_id)
        plan = Plan.of(buckets) if buckets else NO_PLAN
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        self._plans[cache_key] = (served, plan)
        return plan

    async def admit(self, plan: Plan) -> Admission | None:
        """Count the call in, or raise the 429 (503 with ``failure="closed"`` when the
        counters cannot be reached; None, admitted unlimited, with ``"open"``)."""
        if not self.counters.blocking:
            return self.admit_now(plan)
        now = self.clock()
        window_start = self.window_of(now)
        lease = f"{LEASE_PREFIX}{next(_LEASE_SERIAL)}"
        try:
            verdict = await run_in_threadpool(self.counters.admit, plan.buckets, window_start,
                                              lease, int(now * 1000),
                                              int((now + self.lease_s) * 1000))
        except Exception as exc:
            self._unreachable(exc)
            return None
        return self._admitted(plan, verdict, lease, window_start + self.window_s - now)

    def admit_now(self, plan: Plan) -> Admission | None:
        """:meth:`admit` with counters in memory (a few dict operations: on the loop, with no
        task switch). The process that counts a lease is the one that holds it and gives it
        back when the call ends, however it ends: a lease in memory does not expire, and is
        not renewed."""
        now, window_s = self.clock(), self.window_s
        window_start = int(now // window_s) * window_s  # window_of, written out
        reset = window_start + window_s - now
        lease = f"{LEASE_PREFIX}{next(_LEASE_SERIAL)}" if plan.leased else ""
        counters = self.counters
        try:
            if plan.one is not None and isinstance(counters, MemoryCounters):
                requests, tokens, refused = counters.admit_one(plan.one, window_start, lease,
                                                               int(now * 1000), NEVER_MS)
                if refused is None:  # the common case, with nothing to build
                    return Admission(plan, lease, plan.headers(requests + 1, tokens, reset))
                verdict = Verdict({plan.one.name: Count(requests, tokens)}, (plan.one, refused))
            else:
                verdict = counters.admit(plan.buckets, window_start, lease, int(now * 1000),
                                         NEVER_MS)
        except Exception as exc:
            self._unreachable(exc)
            return None
        return self._admitted(plan, verdict, lease, reset, renewed=False)

    def _admitted(self, plan: Plan, verdict: Verdict, lease: str, reset: float, *,
                  renewed: bool = True) -> Admission:
        """The admission of a counted call, or its 429; ``renewed``: its leases expire in the
        store unless :meth:`tick` renews them (Redis, PostgreSQL)."""
        headers = limit_headers(plan, verdict, reset)
        if verdict.refused is not None:
            raise refusal(verdict, reset, headers)
        if renewed and plan.leased:
            with self._lock:
                self._held[lease] = plan.leased
        return Admission(plan, lease, headers)

    async def end(self, admission: Admission) -> None:
        """Charge the call's tokens and give back its slot (never raises)."""
        if not self.counters.blocking:
            self.end_now(admission)
            return
        plan = admission.plan
        if plan.leased:
            with self._lock:
                self._held.pop(admission.lease, None)
        tokens = charged_tokens(admission)
        if tokens or plan.leased:
            try:
                await run_in_threadpool(self.counters.end, plan.charged if tokens else (),
                                        self.window_of(self.clock()), tokens, plan.leased,
                                        admission.lease)
            except Exception as exc:
                self._warn("could not settle a call's rate limits (its lease expires by "
                           "itself)", exc)

    def end_now(self, admission: Admission) -> None:
        """:meth:`end` with counters in memory, on the loop."""
        plan, tap = admission.plan, admission.tap
        # charged_tokens(admission), written out (every call of a limited key ends here)
        tokens = sum(tap.usage()) if plan.charged and tap is not None else 0
        if tokens or plan.leased:
            try:
                counters, window_s = self.counters, self.window_s
                window_start = int(self.clock() // window_s) * window_s  # window_of
                if plan.one is not None and isinstance(counters, MemoryCounters):
                    counters.end_one(plan.one.name, window_start, tokens,
                                     admission.lease if plan.leased else None)
                    return
                counters.end(plan.charged if tokens else (), window_start, tokens, plan.leased,
                             admission.lease)
            except Exception as exc:
                self._warn("could not settle a call's rate limits", exc)

    def window_of(self, now: float) -> int:
        """The start of the window ``now`` falls in (epoch seconds)."""
        return int(now // self.window_s) * self.window_s

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="arkor-rate-limits",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        close = getattr(self.counters, "close", None)
        if close is not None:
            close()

    def tick(self) -> None:
        """Renew the leases of calls in progress; forget old windows and expired leases."""
        now = self.clock()
        with self._lock:
            held = [(name, lease) for lease, names in self._held.items() for name in names]
        try:
            self.counters.renew(held, int(now * 1000), int((now + self.lease_s) * 1000))
            current = self.window_of(now)
            self.counters.sweep(current - WINDOWS_KEPT * self.window_s, int(now * 1000))
        except Exception as exc:
            self._warn("could not renew rate-limit leases", exc)

    def _loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            self.tick()

    def _unreachable(self, exc: Exception) -> None:
        if self.failure == "closed":
            log.warning("rate limits cannot be checked; answering 503: %s", exc)
            raise WireError(503, "Rate limits cannot be checked right now; try again shortly.",
                            kind="server_error", code="rate_limit_unavailable",
                            headers={"Retry-After": "1"}) from exc
        self._warn("rate limits cannot be checked; admitting calls unlimited "
                   "(ARKOR_RATE_LIMIT_FAILURE=open)", exc)

    def _warn(self, message: str, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._warned_at < WARN_EVERY_S:
                return
            self._warned_at = now
        log.warning("%s: %s", message, exc)


def limit_headers(plan: Plan, verdict: Verdict, reset_s: float) -> list[RawHeader]:
    """OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` for the tightest
    bucket of each kind (remaining after this call, when it is admitted), as raw headers."""
    counts = verdict.counts
    admitted = 1 if verdict.refused is None else 0
    return _raw_headers(_tightest(plan.requests, counts, 0, admitted) if plan.requests else None,
                        _tightest(plan.tokens, counts, 1, 0) if plan.tokens else None, reset_s)


def _raw_headers(requests: tuple[int, RawHeader] | None, tokens: tuple[int, RawHeader] | None,
                 reset_s: float) -> list[RawHeader]:
    """The three headers of each kind, from its ``(remaining, limit header)``."""
    headers: list[RawHeader] = []
    if requests or tokens:
        resets = _resets(reset_s)
        if requests:
            headers += (requests[1], (_REQUEST_RAW[1], b"%d" % max(0, requests[0])),
                        resets[0])
        if tokens:
            headers += (tokens[1], (_TOKEN_RAW[1], b"%d" % max(0, tokens[0])), resets[1])
    return headers


def _tightest(limits: tuple[Shown, ...], counts: dict[str, Count], spent: int,
              admitted: int) -> tuple[int, RawHeader] | None:
    """The least remaining (then the lowest limit) of ``limits`` over the buckets counted:
    ``(remaining, limit header)``."""
    found: tuple[int, int, RawHeader] | None = None
    for bucket, limit, shown in limits:
        count = counts.get(bucket)
        if count is not None:
            remaining = limit - count[spent] - admitted
            if found is None or (remaining, limit) < (found[0], found[1]):
                found = (remaining, limit, shown)
    return None if found is None else (found[0], found[2])


def charged_tokens(admission: Admission) -> int:
    """The tokens an ended call is charged (0 when its plan has no token limit)."""
    tap = admission.tap
    if not admission.plan.charged or tap is None:
        return 0
    return sum(tap.usage())


NEVER_MS = 2**62  # a lease in memory: held until its call gives it back


class RateLimited(WireError):
    """The 429 of a call over a limit; ``limit`` says which (requests, tokens, concurrent)."""

    def __init__(self, limit: str, message: str, **options: Any) -> None:
        super().__init__(429, message, **options)
        self.limit = limit


def refusal(verdict: Verdict, reset_s: float,
            raw_headers: list[RawHeader]) -> RateLimited:
    assert verdict.refused is not None
    bucket, kind = verdict.refused
    whose = "this API key" if bucket.name.startswith("key:") else "this deployment"
    count = verdict.counts[bucket.name]
    limits = bucket.limits
    wait = duration(reset_s)
    if kind == CONCURRENT:
        message = (f"Too many concurrent requests on {whose}: at most "
                   f"{limits.concurrent_requests} at once. Retry when one of them has ended.")
        retry_after = 1
    elif kind == TOKENS:
        message = (f"Rate limit reached for tokens per minute on {whose}: limit "
                   f"{limits.tokens_per_minute}, used {count.tokens}. Try again in {wait}.")
        retry_after = max(1, math.ceil(reset_s))
    else:
        message = (f"Rate limit reached for requests per minute on {whose}: limit "
                   f"{limits.requests_per_minute}, used {count.requests}. "
                   f"Try again in {wait}.")
        retry_after = max(1, math.ceil(reset_s))
    return RateLimited(kind, message, kind=TOKENS if kind == TOKENS else REQUESTS,
                       code="rate_limit_exceeded",
                       headers={**{name.decode(): value.decode() for name, value in raw_headers},
                                "Retry-After": str(retry_after)})


@dataclass
class _Call:
    limiter: RateLimiter
    admission: Admission | None = None
    settled: bool = False

    async def settle(self) -> None:
        if self.admission is not None and not self.settled:
            self.settled = True
            with anyio.CancelScope(shield=True):
                await self.limiter.end(self.admission)

    def settle_now(self) -> None:
        """:meth:`settle` with counters in memory (nothing to wait for)."""
        if self.admission is not None and not self.settled:
            self.settled = True
            self.limiter.end_now(self.admission)


async def admit(scope: Scope, served: ServedDeployment, key_id: str | None) -> None:
    """Admit this call under its deployment's and key's limits, or raise the 429."""
    call: _Call | None = scope.get(SCOPE_KEY)
    if call is None:
        return
    plan = call.limiter.plan(served, key_id)
    if plan.buckets:
        try:
            limiter = call.limiter
            call.admission = (limiter.admit_now(plan) if not limiter.counters.blocking
                              else await limiter.admit(plan))
        except RateLimited as refused:
            count_rate_limited(served.id, refused.limit)
            raise


class LimitedEdge:
    """The edge app with rate limits: an admitted call's headers go on whatever answer it
    gets, and it is settled (tokens charged, slot given back) before the last byte of the
    answer goes out, so a client that sends its next call at once finds it counted; or, when
    the answer never ends (the client left, an error), once the edge app is done."""

    def __init__(self, edge: ASGIApp, limiter: RateLimiter) -> None:
        self.edge = edge
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.edge(scope, receive, send)
            return
        call = _Call(self.limiter)
        scope[SCOPE_KEY] = call

        async def send_limited(message: Message) -> None:
            admission = call.admission
            if admission is not None:
                if message["type"] == "http.response.start":
                    admission.tap = runs.current.get()
                    message["headers"] = [*message.get("headers", ()), *admission.raw_headers]
                elif message["type"] == "http.response.body" and not message.get("more_body"):
                    if in_memory:
                        call.settle_now()
                    else:
                        await call.settle()
            await send(message)

        in_memory = not self.limiter.counters.blocking
        try:
            await self.edge(scope, receive, send_limited)
        finally:
            if in_memory:
                call.settle_now()
            else:
                await call.settle()
