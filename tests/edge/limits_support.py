"""Helpers of the rate-limit tests: windows, OpenAI's reset durations, parallel calls, the
Redis they use (``ARKOR_TEST_REDIS_URL``, else 127.0.0.1:6379 when it answers)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import httpx

REDIS_ENV = "ARKOR_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
REDIS_FIX = f"start Redis on 127.0.0.1:6379 (redis-server --daemonize yes), or set {REDIS_ENV}"


def redis_url() -> str | None:
    import redis

    url = os.environ.get(REDIS_ENV, DEFAULT_REDIS_URL)
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1) as client:
            client.ping()
    except redis.RedisError:
        return None
    return url


def fresh_window(window_s: float) -> None:
    """Sleep until a window has just begun, so the calls that follow share one."""
    time.sleep(window_s - time.time() % window_s + 0.02)


def reset_seconds(value: str) -> float:
    """OpenAI's reset durations: ``250ms``, ``1.5s``, ``1m30s``."""
    if value.endswith("ms"):
        return int(value[:-2]) / 1000
    minutes, _, seconds = value[:-1].rpartition("m")
    return int(minutes or 0) * 60 + float(seconds)


def limit_headers(answer: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in answer.headers.items() if k.startswith("x-ratelimit-")}


def parallel(count: int, send: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """``count`` calls released at once, each on its own thread."""
    start = threading.Barrier(count)
    answers: list[httpx.Response | None] = [None] * count

    def one(index: int) -> None:
        start.wait()
        answers[index] = send(index)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]
