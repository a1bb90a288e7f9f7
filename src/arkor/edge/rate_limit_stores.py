"""Where rate-limit counters live: memory (one process), Redis, or PostgreSQL
(:class:`arkor.store.rate_limits.SqlCounters`).

Each store answers the same four calls, with the same meaning:

- ``admit(buckets, window_start, lease, now_ms, expires_ms)``: atomically, over every
  bucket, refuse the call if one more would break a limit (:func:`~arkor.store.rate_limits.judge`),
  else count the request in each windowed bucket and hold a lease in each bucket with a
  concurrent-request limit. The :class:`~arkor.store.rate_limits.Verdict` has the counts seen.
- ``end(charge, window_start, tokens, release, lease)``: add a finished call's tokens to the
  ``charge`` buckets' window and give back its lease in the ``release`` buckets.
- ``renew(held, now_ms, expires_ms)``: push back the expiry of leases of calls still in progress.
- ``sweep(before_window_start, now_ms)``: forget old windows and expired leases.

``blocking`` says whether a call does I/O (and so runs off the event loop).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from arkor.store.rate_limits import Bucket, Count, Verdict, judge


class Counters(Protocol):
    blocking: bool

    def admit(self, buckets: Sequence[Bucket], window_start: int, lease: str,
              now_ms: int, expires_ms: int) -> Verdict: ...

    def end(self, charge: Sequence[str], window_start: int, tokens: int,
            release: Sequence[str], lease: str) -> None: ...

    def renew(self, held: Sequence[tuple[str, str]], now_ms: int, expires_ms: int) -> None: ...

    def sweep(self, before_window_start: int, now_ms: int) -> None: ...


class _Slot:
    """One bucket in memory: its latest window's counts and the leases held in it."""

    __slots__ = ("leases", "requests", "tokens", "window_start")

    def __init__(self, window_start: int) -> None:
        self.window_start = window_start
        self.requests = self.tokens = 0
        self.leases: dict[str, int] = {}  # lease -> expiry (ms)

    def start(self, window_start: int) -> None:
        """Count from zero in a later window (windows only move on: an earlier one is never
        asked for again, so only the latest is kept)."""
        self.window_start, self.requests, self.tokens = window_start, 0, 0

    def live(self, now_ms: int, limit: int | None) -> int:
        """Leases held: every one, unless that reaches the limit; then those not expired."""
        held = len(self.leases)
        if limit is None or held < limit:
            return held
        return sum(1 for expiry in self.leases.values() if expiry > now_ms)


class MemoryCounters:
    """One process's counters (SQLite installations, which run one process): a slot per
    bucket, its latest window only."""

    blocking = False

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()

    def _slot(self, name: str, window_start: int) -> _Slot:
        """The bucket's slot, counting in ``window_start``'s window."""
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = _Slot(window_start)
        elif window_start > slot.window_start:
            slot.start(window_start)
        return slot

    def admit(self, buckets: Sequence[Bucket], window_start: int, lease: str,
              now_ms: int, expires_ms: int) -> Verdict:
        counts: dict[str, Count] = {}
        with self._lock:
            slots = [self._slot(bucket.name, window_start) for bucket in buckets]
            for bucket, slot in zip(buckets, slots, strict=True):
                counts[bucket.name] = Count(slot.requests, slot.tokens)
                limits = bucket.limits
                refused = judge(limits, slot.requests, slot.tokens,
                                slot.live(now_ms, limits.concurrent_requests))
                if refused is not None:
                    return Verdict(counts, (bucket, refused))
            for bucket, slot in zip(buckets, slots, strict=True):
                slot.requests += 1
                if bucket.limits.concurrent_requests is not None:
                    slot.leases[lease] = expires_ms
        return Verdict(counts)

    def admit_one(self, bucket: Bucket, window_start: int, lease: str, now_ms: int,
                  expires_ms: int) -> tuple[int, int, str | None]:
        """:meth:`admit` for a call with one bucket, with no verdict to build: the requests
        and tokens counted in the window before it, and the limit it would break (None: it is
        admitted and counted)."""
        limits = bucket.limits
        with self._lock:
            slot = self._slot(bucket.name, window_start)
            requests, tokens = slot.requests, slot.tokens
            refused = judge(limits, requests, tokens,
                            slot.live(now_ms, limits.concurrent_requests))
            if refused is None:
                slot.requests += 1
                if limits.concurrent_requests is not None:
                    slot.leases[lease] = expires_ms
        return requests, tokens, refused

    def end(self, charge: Sequence[str], window_start: int, tokens: int,
            release: Sequence[str], lease: str) -> None:
        with self._lock:
            for name in charge:
                slot = self._slot(name, window_start)
                if slot.window_start == window_start:  # not a window already gone
                    slot.tokens += tokens
            for name in release:
                slot_of = self._slots.get(name)
                if slot_of is not None:
                    slot_of.leases.pop(lease, None)

    def end_one(self, name: str, window_start: int, tokens: int, lease: str | None) -> None:
        """:meth:`end` for a call with one bucket: ``tokens`` charged to it (0: none), its
        ``lease`` given back (None: it holds none)."""
        with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                if not tokens:
                    return
                slot = self._slots[name] = _Slot(window_start)
            elif window_start > slot.window_start:
                slot.start(window_start)
            if tokens and slot.window_start == window_start:
                slot.tokens += tokens
            if lease is not None:
                slot.leases.pop(lease, None)

    def renew(self, held: Sequence[tuple[str, str]], now_ms: int, expires_ms: int) -> None:
        with self._lock:
            for name, lease in held:
                slot = self._slots.get(name)
                if slot is not None and lease in slot.leases:
                    slot.leases[lease] = expires_ms

    def sweep(self, before_window_start: int, now_ms: int) -> None:
        with self._lock:
            for name, slot in list(self._slots.items()):
                for lease in [k for k, expiry in slot.leases.items() if expiry <= now_ms]:
                    del slot.leases[lease]
                if slot.window_start < before_window_start and not slot.leases:
                    del self._slots[name]
                elif slot.window_start < before_window_start:
                    slot.requests = slot.tokens = 0


# Over every bucket at once: check each (window counts, live leases), then count the request
# and hold the lease in each, or refuse naming the first bucket over a limit. Answers
# {admitted, refused bucket index, refused limit, requests_1, tokens_1, ...}.
ADMIT = """
local n, now, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local expires, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {1, 0, ''}
for i = 1, n do
  local w, l = KEYS[2 * i - 1], KEYS[2 * i]
  local rpm, tpm, conc = tonumber(ARGV[3 * i + 3]), tonumber(ARGV[3 * i + 4]),
                         tonumber(ARGV[3 * i + 5])
  local r = tonumber(redis.call('HGET', w, 'r') or 0)
  local t = tonumber(redis.call('HGET', w, 't') or 0)
  table.insert(out, r)
  table.insert(out, t)
  local kind = ''
  if rpm >= 0 and r >= rpm then kind = 'requests'
  elseif tpm >= 0 and t >= tpm then kind = 'tokens'
  elseif conc >= 0 then
    redis.call('ZREMRANGEBYSCORE', l, '-inf', now)
    if redis.call('ZCARD', l) >= conc then kind = 'concurrent' end
  end
  if kind ~= '' then
    out[1], out[2], out[3] = 0, i, kind
    return out
  end
end
for i = 1, n do
  local w, l = KEYS[2 * i - 1], KEYS[2 * i]
  if tonumber(ARGV[3 * i + 3]) >= 0 or tonumber(ARGV[3 * i + 4]) >= 0 then
    redis.call('HINCRBY', w, 'r', 1)
    redis.call('EXPIRE', w, ttl)
  end
  if tonumber(ARGV[3 * i + 5]) >= 0 then
    redis.call('ZADD', l, expires, lease)
    redis.call('PEXPIRE', l, 2 * (expires - now))
  end
end
return out
"""
TIMEOUT_S = 1.0


class RedisCounters:
    """Counters in Redis (``ARKOR_REDIS_URL``): a hash per bucket and window (``r``, ``t``,
    expiring after two windows) and a sorted set of leases per bucket (score: expiry). Keys
    carry the deployment id as a hash tag, so one call's keys share a Redis Cluster slot."""

    blocking = True

    def __init__(self, url: str, *, window_s: int) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT_S,
                                           socket_timeout=TIMEOUT_S)
        self._admit: Any = self._redis.register_script(ADMIT)
        self._ttl = 2 * window_s + 1

    @staticmethod
    def _key(name: str, suffix: str) -> str:
        deployment = name.split(":")[1]
        return f"arkor:rl:{{{deployment}}}:{name}:{suffix}"

    def admit(self, buckets: Sequence[Bucket], window_start: int, lease: str,
              now_ms: int, expires_ms: int) -> Verdict:
        keys: list[str] = []
        args: list[int | str] = [len(buckets), now_ms, lease, expires_ms, self._ttl]
        for bucket in buckets:
            keys += [self._key(bucket.name, f"w:{window_start}"),
                     self._key(bucket.name, "leases")]
            limits = bucket.limits
            args += [-1 if v is None else v for v in (
                limits.requests_per_minute, limits.tokens_per_minute,
                limits.concurrent_requests)]
        answer = self._admit(keys=keys, args=args)
        admitted, index, kind = int(answer[0]), int(answer[1]), answer[2]
        seen = answer[3:]
        counts = {bucket.name: Count(int(seen[2 * i]), int(seen[2 * i + 1]))
                  for i, bucket in enumerate(buckets[:len(seen) // 2])}
        if admitted:
            return Verdict(counts)
        refused = kind.decode() if isinstance(kind, bytes) else str(kind)
        return Verdict(counts, (buckets[index - 1], refused))

    def end(self, charge: Sequence[str], window_start: int, tokens: int,
            release: Sequence[str], lease: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for name in charge:
            key = self._key(name, f"w:{window_start}")
            pipe.hincrby(key, "t", tokens)
            pipe.expire(key, self._ttl)
        for name in release:
            pipe.zrem(self._key(name, "leases"), lease)
        pipe.execute()

    def renew(self, held: Sequence[tuple[str, str]], now_ms: int, expires_ms: int) -> None:
        if not held:
            return
        pipe = self._redis.pipeline(transaction=False)
        for name, lease in held:
            key = self._key(name, "leases")
            pipe.zadd(key, {lease: expires_ms}, xx=True)
            pipe.pexpire(key, 2 * (expires_ms - now_ms))
        pipe.execute()

    def sweep(self, before_window_start: int, now_ms: int) -> None:
        """Nothing to do: windows expire by themselves, and so do lease sets."""

    def close(self) -> None:
        self._redis.close()
