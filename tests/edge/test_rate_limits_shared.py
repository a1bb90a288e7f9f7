"""Rate limits hold across server processes: two real processes (``tests/edge/limited_server.py``)
on one PostgreSQL database, with the counters in PostgreSQL, then in one Redis. A limit of N
requests per window admits N in total whichever process each call reaches, both answer the
shared remainder in ``x-ratelimit-*``, and the next window admits again; a concurrent limit
of 4 admits 4 of 32 parallel calls spread over both."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy

from arkor.sdk import Deployment
from arkor.store.db import normalize_url
from tests.conftest import note_missing
from tests.edge.conftest import EMBEDDED
from tests.edge.limited_server import SLOW
from tests.edge.limits_support import REDIS_FIX, fresh_window, parallel, redis_url, reset_seconds
from tests.servers import POSTGRES_ENV, free_port, postgres_schema_url
from tests.workspace import Workspace, new_workspace

ROOT = Path(__file__).resolve().parents[2]
WINDOW_S = 3


@contextmanager
def server_process(data_dir: Path, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.edge.limited_server", str(port)], cwd=ROOT,
        env={**{k: v for k, v in os.environ.items()  # the test's settings only
                if not k.startswith("ARKOR_") or k == "ARKOR_HOME"},
             "PYTHONPATH": str(ROOT), "ARKOR_DATA_DIR": str(data_dir),
             "ARKOR_RATE_LIMIT_WINDOW_S": str(WINDOW_S), **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the server process did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@dataclass
class Pair:
    counters: str
    urls: tuple[str, str]
    database_url: str
    redis_url: str | None
    ws: Workspace

    def deployment(self, slug: str) -> tuple[Deployment, str, str]:
        dep = self.ws.client.create_deployment(
            self.ws.scope, slug=f"{slug}-{self.counters[:2]}",
            target={"kind": "base_model", "baseModel": EMBEDDED})
        key = self.ws.client.create_deployment_key(dep.id, self.ws.scope, label="shared")
        return dep, key.id, key.plaintext

    def call(self, server: int, dep: Deployment, key: str, *, slow: bool = False
             ) -> httpx.Response:
        route, body = (("completions", {"prompt": SLOW}) if slow else
                       ("chat/completions", {"messages": [{"role": "user", "content": "hi"}]}))
        return httpx.post(f"{self.urls[server]}/d/{dep.slug}/v1/{route}", json=body,
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.fixture(scope="module", params=[pytest.param("postgres", marks=pytest.mark.postgres),
                                        pytest.param("redis", marks=pytest.mark.postgres)])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Pair]:
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set")
    env: dict[str, str] = {}
    redis = None
    if request.param == "redis":
        redis = redis_url()
        if redis is None:
            note_missing("Redis", REDIS_FIX)
            pytest.skip(f"Redis is not reachable: {REDIS_FIX}")
        env["ARKOR_REDIS_URL"] = redis
    with postgres_schema_url() as database_url, ExitStack() as stack:
        env["ARKOR_DATABASE_URL"] = database_url
        # One after the other: the first runs the migrations.
        first = stack.enter_context(server_process(tmp_path_factory.mktemp("a"), env))
        second = stack.enter_context(server_process(tmp_path_factory.mktemp("b"), env))
        yield Pair(request.param, (first, second), database_url, redis, new_workspace(first))


def windows_kept_in_postgres(pair: Pair, bucket: str) -> int:
    engine = sqlalchemy.create_engine(normalize_url(pair.database_url))
    with engine.connect() as conn:
        count = conn.execute(sqlalchemy.text(
            "SELECT count(*) FROM rate_limit_windows WHERE bucket = :b"), {"b": bucket}).scalar()
    engine.dispose()
    return int(count or 0)


def test_n_requests_per_window_are_admitted_across_both_processes(pair: Pair) -> None:
    dep, key_id, key = pair.deployment("rpm")
    pair.ws.client.update_deployment_key(dep.id, key_id, pair.ws.scope,
                                         limits={"requests_per_minute": 5})
    fresh_window(WINDOW_S)
    admitted = [pair.call(i % 2, dep, key) for i in range(5)]
    assert [a.status_code for a in admitted] == [200] * 5, [a.text for a in admitted]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in admitted] == [
        "4", "3", "2", "1", "0"]
    assert {a.headers["x-ratelimit-limit-requests"] for a in admitted} == {"5"}

    refused = [pair.call(server, dep, key) for server in (0, 1)]
    for answer in refused:
        assert answer.status_code == 429
        error = answer.json()["error"]
        assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
        assert "limit 5, used 5" in error["message"]
        assert answer.headers["x-ratelimit-limit-requests"] == "5"
        assert answer.headers["x-ratelimit-remaining-requests"] == "0"
        reset = reset_seconds(answer.headers["x-ratelimit-reset-requests"])
        assert 0 < reset <= WINDOW_S
        assert 1 <= int(answer.headers["retry-after"]) <= WINDOW_S

    bucket = f"key:{dep.id}:{key_id}"
    if pair.counters == "postgres":
        assert windows_kept_in_postgres(pair, bucket) == 1
    else:
        import redis

        with redis.Redis.from_url(pair.redis_url or "") as client:
            assert client.keys(f"arkor:rl:{{{dep.id}}}:{bucket}:w:*")
        assert windows_kept_in_postgres(pair, bucket) == 0

    time.sleep(reset + 0.05)
    again = pair.call(1, dep, key)
    assert again.status_code == 200, again.text
    assert again.headers["x-ratelimit-remaining-requests"] == "4"


def test_concurrent_requests_hold_across_both_processes(pair: Pair) -> None:
    dep, key_id, key = pair.deployment("busy")
    pair.ws.client.update_deployment_key(dep.id, key_id, pair.ws.scope,
                                         limits={"concurrent_requests": 4})
    answers = parallel(32, lambda i: pair.call(i % 2, dep, key, slow=True))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 4 + [429] * 28, [a.text for a in answers if a.status_code >= 500]
    assert all("at most 4 at once" in a.json()["error"]["message"]
               for a in answers if a.status_code == 429)
    assert [pair.call(i, dep, key, slow=True).status_code for i in (0, 1)] == [200, 200]
