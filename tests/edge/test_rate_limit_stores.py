"""The three homes of the rate-limit counters answer alike: memory, PostgreSQL (the
installation's database, migrated) and Redis. Exactly N admissions per window, an admission
refused by one bucket counts in none, tokens charged at the end, leases given back, and a
lease that is not renewed expires (a process that died frees its slots)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from arkor.edge.rate_limit_stores import Counters, MemoryCounters, RedisCounters
from arkor.store.db import Database, migrate
from arkor.store.rate_limits import CONCURRENT, REQUESTS, TOKENS, Bucket, Count, Limits, SqlCounters
from tests.conftest import note_missing
from tests.edge.limits_support import REDIS_FIX, redis_url
from tests.servers import postgres_schema_url

WINDOW = 1_000_020
NOW_MS = WINDOW * 1000


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres),
                        "redis"])
def counters(request: pytest.FixtureRequest) -> Iterator[Counters]:
    if request.param == "memory":
        yield MemoryCounters()
    elif request.param == "postgres":
        with postgres_schema_url() as url:
            db = Database(url)
            migrate(db.engine)
            yield SqlCounters(db.engine)
            db.dispose()
    else:
        url = redis_url()
        if url is None:
            note_missing("Redis", REDIS_FIX)
            pytest.skip(f"Redis is not reachable: {REDIS_FIX}")
        store = RedisCounters(url, window_s=60)
        yield store
        store.close()


def bucket(limits: Limits) -> Bucket:
    return Bucket(f"key:{uuid.uuid4()}:{uuid.uuid4()}", limits)


def admit(counters: Counters, *buckets: Bucket, lease: str = "l", now_ms: int = NOW_MS,
          expires_ms: int = NOW_MS + 60_000, window: int = WINDOW):  # type: ignore[no-untyped-def]
    return counters.admit(list(buckets), window, lease, now_ms, expires_ms)


def test_n_per_window_then_refused_then_a_new_window(counters: Counters) -> None:
    limited = bucket(Limits(requests_per_minute=3))
    verdicts = [admit(counters, limited, lease=str(i)) for i in range(4)]
    assert [v.refused is None for v in verdicts] == [True, True, True, False]
    assert [v.counts[limited.name] for v in verdicts] == [
        Count(0, 0), Count(1, 0), Count(2, 0), Count(3, 0)]
    assert verdicts[3].refused == (limited, REQUESTS)
    assert admit(counters, limited, window=WINDOW + 60).refused is None


def test_a_refusal_by_one_bucket_counts_in_none(counters: Counters) -> None:
    roomy = bucket(Limits(requests_per_minute=10))
    tight = bucket(Limits(requests_per_minute=1))
    assert admit(counters, roomy, tight).refused is None
    assert admit(counters, roomy, tight).refused == (tight, REQUESTS)
    assert admit(counters, roomy).counts[roomy.name] == Count(1, 0)


def test_tokens_are_charged_when_a_call_ends(counters: Counters) -> None:
    limited = bucket(Limits(tokens_per_minute=100))
    assert admit(counters, limited).refused is None
    counters.end([limited.name], WINDOW, 60, [], "l")
    verdict = admit(counters, limited)
    assert verdict.refused is None and verdict.counts[limited.name] == Count(1, 60)
    counters.end([limited.name], WINDOW, 40, [], "l")
    assert admit(counters, limited).refused == (limited, TOKENS)


def test_leases_are_given_back_and_expire_unless_renewed(counters: Counters) -> None:
    limited = bucket(Limits(concurrent_requests=2))
    assert admit(counters, limited, lease="a").refused is None
    assert admit(counters, limited, lease="b", expires_ms=NOW_MS + 1_000).refused is None
    assert admit(counters, limited, lease="c").refused == (limited, CONCURRENT)
    counters.end([], WINDOW, 0, [limited.name], "a")
    assert admit(counters, limited, lease="d").refused is None
    # "b" was not renewed: after its expiry it holds no slot; "d" was renewed and still does.
    later = NOW_MS + 2_000
    counters.renew([(limited.name, "d")], later, later + 60_000)
    assert admit(counters, limited, lease="e", now_ms=later).refused is None
    assert admit(counters, limited, lease="f", now_ms=later).refused == (limited, CONCURRENT)


def test_sweeping_forgets_old_windows(counters: Counters) -> None:
    if isinstance(counters, RedisCounters):
        pytest.skip("Redis forgets windows by their expiry")
    limited = bucket(Limits(requests_per_minute=1))
    assert admit(counters, limited).refused is None
    counters.sweep(WINDOW, NOW_MS)  # windows before WINDOW: this one stays
    assert admit(counters, limited).refused == (limited, REQUESTS)
    counters.sweep(WINDOW + 1, NOW_MS)
    assert admit(counters, limited).refused is None


def test_a_buckets_first_call_is_judged_like_any_other(counters: Counters) -> None:
    closed = bucket(Limits(requests_per_minute=0))  # not settable through the API (>= 1)
    assert admit(counters, closed).refused == (closed, REQUESTS)
    assert admit(counters, closed).refused == (closed, REQUESTS)


def test_settling_one_bucket_in_memory_is_settling_it_as_a_list() -> None:
    """``MemoryCounters.end_one`` (a call with one bucket, as most are) leaves the counts
    ``end`` leaves: tokens charged to the window the call ends in, its lease given back."""
    one, listed = MemoryCounters(), MemoryCounters()
    limited = bucket(Limits(tokens_per_minute=100, concurrent_requests=1))
    for counters in (one, listed):
        assert admit(counters, limited, lease="a").refused is None
        assert admit(counters, limited, lease="b").refused == (limited, CONCURRENT)
    one.end_one(limited.name, WINDOW, 60, "a")
    listed.end([limited.name], WINDOW, 60, [limited.name], "a")
    for counters in (one, listed):
        verdict = admit(counters, limited, lease="c")
        assert verdict.refused is None and verdict.counts[limited.name] == Count(1, 60)
    # A call ending in the next window charges that window; one with no tokens only frees.
    one.end_one(limited.name, WINDOW + 60, 30, "c")
    listed.end([limited.name], WINDOW + 60, 30, [limited.name], "c")
    for counters in (one, listed):
        assert admit(counters, limited, window=WINDOW + 60, lease="d").counts[
            limited.name] == Count(0, 30)
    one.end_one(limited.name, WINDOW + 60, 0, "d")
    listed.end([], WINDOW + 60, 0, [limited.name], "d")
    for counters in (one, listed):
        assert admit(counters, limited, window=WINDOW + 60, lease="e").counts[
            limited.name] == Count(1, 30)
    one.end_one("key:never-seen", WINDOW, 0, "z")  # nothing to settle: no error, no slot
    assert "key:never-seen" not in one._slots
