"""What the edge adds on top of the engine: routing, the key check and OpenAI framing.

Run: ``.venv/bin/python bench/edge_overhead.py``

Both sides use the same stand-in engine that answers instantly (``InstantEngine``, below):
the point is to measure the edge's own code, not generation. Requests go through the whole
ASGI application in-process (EdgeRouter middleware → deployment cache → key digest check →
JSON parsing and validation → engine → OpenAI response), without sockets, so the numbers are
the edge's CPU cost rather than the HTTP client's. The baseline, measured in the same run,
calls the engine directly with a hand-built request, so routing, auth, parsing, validation
and response framing all count as overhead.

Printed: p50 and p99 of the added latency per chat completion at a fixed concurrency, and
requests per second of one worker on the auth + route path (``GET /v1/models``). Targets:
p50 <= 1 ms, p99 <= 3 ms, >= 1,000 req/s. The published anchor is LiteLLM's proxy at
4.34 ms median overhead.

Then run recording: the same calls to a deployment that keeps runs (recorded, the recorder's
thread writing them to SQLite as it does in a server) and to one whose retention is
``disabled`` (nothing recorded), at the same concurrency; printed as the ratio of the edge's
time per call with recording to without. Target: <= 1.05.

Last, metering and rate limits: calls to a deployment with limits (far above what the bench
sends, so every call is checked and admitted) and metering on, against calls to one without
limits with the recorder (metering and runs) switched off; printed as the ratio of time per
call. Target: <= 1.10.

Both comparisons run in 24 rounds, each side in turn (the order alternating), and print the
median of the rounds' ratios twice: by mean latency, and by the process's CPU time (every
thread, so the recorder's writes count), which a busy shared machine disturbs less.

Then the same metering + limits comparison through a real server: the app in its own process
under uvicorn with the product's server configuration (``arkor.cloud.serving``), called over
HTTP with keep-alive connections, the ratio taken of the server process's CPU time per call
(what serving a call costs, HTTP included; the client's work is not counted). ``--no-http``
skips it.

Both apps run as a server process runs them: its heap frozen once the app is built
(``arkor.heap``, as ``arkor cloud serve`` does), so a full garbage collection that lands in
one side's round does not charge that side a walk over every module the process imported.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arkor import heap
from arkor.cloud.serving import server_config
from arkor.cloud.settings import Settings
from arkor.engine.base import (
    ChatMessage,
    Finished,
    GenerationEvent,
    GenerationRequest,
    SamplingParams,
    TextDelta,
)
from arkor.server import create_app
from arkor.store import deployment_keys, deployments, identities, projects
from arkor.store.deployments import TargetColumns

CONCURRENCY = int(os.environ.get("ARKOR_BENCH_CONCURRENCY", "8"))
REQUESTS = 4000
ROUNDS = 24
RPS_SECONDS = 3.0
BODY = json.dumps({"model": "x", "messages": [{"role": "user", "content": "Hello!"}],
                   "max_tokens": 8}).encode()


class InstantEngine:
    """Answers "Hello there!" at once: a stand-in so only the edge's own cost is measured."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        yield TextDelta("Hello there!")
        yield Finished("stop", prompt_tokens=9, completion_tokens=3)


def seed(app, slug: str = "bench-bot", retention: str = "days") -> tuple[str, str]:
    with app.state.db.session() as session:
        ident = identities.create_anonymous_identity(session, kind="cli")
        project = projects.create_project(session, org_id=ident.org.id, slug="bench", name="b")
        dep = deployments.create_deployment(
            session, org_id=ident.org.id, project_id=project.id, slug=slug,
            target=TargetColumns(target_kind="base_model",
                                 base_model="HuggingFaceTB/SmolLM2-135M-Instruct"),
            auth_mode="fixed_api_key", run_retention_mode=retention,
            run_retention_days=7 if retention == "days" else None)
        _, plaintext = deployment_keys.create_key(session, deployment_id=dep.id, label="bench")
    return dep.slug, plaintext


def seed_limited(app) -> tuple[str, str]:
    """A deployment that keeps no runs, with limits far above what the bench sends (every call
    is checked and admitted)."""
    slug, key = seed(app, "bench-limited", "disabled")
    with app.state.db.session() as session:
        dep = deployments.deployment_by_slug(session, slug)
        assert dep is not None
        dep.requests_per_minute = 10**9
        dep.tokens_per_minute = 10**9
        dep.concurrent_requests = 10**6
    app.state.edge.directory.invalidate()
    return slug, key


async def call(app, method: str, path: str, key: str, body: bytes = b"") -> int:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "server": ("127.0.0.1", 8787), "client": ("127.0.0.1", 50000),
        "headers": [(b"host", b"127.0.0.1:8787"), (b"authorization", f"Bearer {key}".encode()),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    }
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    status = 0

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def direct(engine: InstantEngine) -> None:
    """The baseline: the engine call alone, with a request built by hand."""
    request = GenerationRequest("HuggingFaceTB/SmolLM2-135M-Instruct",
                                (ChatMessage("user", "Hello!"),), SamplingParams(max_tokens=8))
    async for _event in engine.generate(request):
        pass


async def latencies(make_call, total: int) -> list[float]:
    results: list[float] = []
    per_worker = total // CONCURRENCY

    async def worker() -> None:
        for _ in range(per_worker):
            began = time.perf_counter()
            await make_call()
            results.append(time.perf_counter() - began)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return results


@dataclass
class Comparison:
    """Calls with a feature on against off, in interleaved rounds."""

    on: list[float] = field(default_factory=list)  # each call's latency
    off: list[float] = field(default_factory=list)
    wall_ratios: list[float] = field(default_factory=list)  # per round: mean latency on/off
    cpu_ratios: list[float] = field(default_factory=list)  # per round: process CPU time on/off

    def summary(self) -> str:
        return (f"{statistics.fmean(self.on) * 1000:.3f} ms per call on vs "
                f"{statistics.fmean(self.off) * 1000:.3f} ms off; ratio "
                f"{statistics.median(self.wall_ratios):.3f} by latency, "
                f"{statistics.median(self.cpu_ratios):.3f} by CPU time (medians of "
                f"{len(self.cpu_ratios)} interleaved rounds)")


async def interleaved(on_call, off_call, switch=lambda on: None) -> Comparison:
    """``ROUNDS`` rounds of ``on_call`` and ``off_call`` (``switch(True/False)`` before each),
    the order alternating, so drift on a shared machine falls on both sides alike. The
    process CPU time counts every thread (the recorder's writes included)."""
    found = Comparison()
    per_round = REQUESTS // ROUNDS
    for index in range(ROUNDS):
        seen: dict[bool, tuple[list[float], float]] = {}
        for on in ((True, False) if index % 2 == 0 else (False, True)):
            switch(on)
            began = time.process_time()
            calls = await latencies(on_call if on else off_call, per_round)
            seen[on] = calls, time.process_time() - began
        found.on += seen[True][0]
        found.off += seen[False][0]
        found.wall_ratios.append(statistics.fmean(seen[True][0]) / statistics.fmean(seen[False][0]))
        found.cpu_ratios.append(seen[True][1] / seen[False][1])
    return found


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def main() -> None:
    engine = InstantEngine()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp)), engine=engine)
        heap.enable()  # as a server process does (arkor cloud serve)
        slug, key = seed(app)
        path = f"/d/{slug}/v1/chat/completions"
        assert await call(app, "POST", path, key, BODY) == 200
        assert await call(app, "POST", path, "ark_live_wrong", BODY) == 401

        async def edge_call() -> None:
            assert await call(app, "POST", path, key, BODY) == 200

        for _ in range(2):  # warm up both paths, then measure them interleaved twice
            await latencies(edge_call, 400)
            await latencies(lambda: direct(engine), 400)
        edge = await latencies(edge_call, REQUESTS)
        base = await latencies(lambda: direct(engine), REQUESTS)

        models = f"/d/{slug}/v1/models"
        count, began = 0, time.perf_counter()
        while time.perf_counter() - began < RPS_SECONDS:
            assert await call(app, "GET", models, key) == 200
            count += 1
        rps = count / (time.perf_counter() - began)

        # Recording on (bench-bot keeps runs) against off (retention disabled), interleaved.
        quiet_slug, quiet_key = seed(app, "bench-quiet", "disabled")
        quiet = f"/d/{quiet_slug}/v1/chat/completions"

        async def quiet_call() -> None:
            assert await call(app, "POST", quiet, quiet_key, BODY) == 200

        recorder = app.state.recorder
        recorder.start()  # its thread writes the runs as a server's does
        recording = await interleaved(edge_call, quiet_call)
        recorder.stop()
        written, dropped = recorder.written, recorder.dropped

        # Metering and rate limits on (a limited deployment that keeps no runs: counted only)
        # against both off (no limits, no recorder at all).
        limited_slug, limited_key = seed_limited(app)
        limited = f"/d/{limited_slug}/v1/chat/completions"

        async def limited_call() -> None:
            assert await call(app, "POST", limited, limited_key, BODY) == 200

        edge_app = app.state.edge

        def metering(on: bool) -> None:
            edge_app.recorder = recorder if on else None

        recorder.start()
        guard = await interleaved(limited_call, quiet_call, metering)
        edge_app.recorder = recorder
        recorder.stop()
        metered = recorder.metered

    p50 = (pct(edge, 50) - pct(base, 50)) * 1000
    p99 = (pct(edge, 99) - pct(base, 99)) * 1000
    print(f"concurrency {CONCURRENCY}, {REQUESTS} chat completions per side")
    print(f"engine called directly: p50 {pct(base, 50) * 1000:.3f} ms, "
          f"p99 {pct(base, 99) * 1000:.3f} ms")
    print(f"through the edge:       p50 {pct(edge, 50) * 1000:.3f} ms, "
          f"p99 {pct(edge, 99) * 1000:.3f} ms")
    print(f"edge overhead:          p50 {p50:.3f} ms (target <= 1), "
          f"p99 {p99:.3f} ms (target <= 3)")
    print(f"auth + route path (GET /v1/models), one worker: {rps:,.0f} req/s "
          f"(target >= 1,000)")
    print(f"ratio to LiteLLM's published 4.34 ms median overhead: {p50 / 4.34:.2f}x")
    print(f"run recording: {recording.summary()} (target <= 1.05); {written} runs written, "
          f"{dropped} dropped")
    print(f"metering + rate limits: {guard.summary()} (target <= 1.10); {metered} calls "
          "metered")
    if "--no-http" not in sys.argv:
        served = await over_http()
        print(f"metering + rate limits through a real server (uvicorn, HTTP/1.1 keep-alive): "
              f"{statistics.fmean(served.on) * 1e6:.0f} us of server CPU per call on vs "
              f"{statistics.fmean(served.off) * 1e6:.0f} us off; ratio "
              f"{statistics.median(served.cpu_ratios):.3f} (median of "
              f"{len(served.cpu_ratios)} interleaved rounds; target <= 1.10)")


def serve(port: int, data_dir: Path) -> None:
    """The server of the real-HTTP comparison, in its own process: the app with the instant
    engine and the two deployments, behind a bench-only route (``/bench/...``, outside the
    app) that switches metering and reads this process's CPU time."""
    import uvicorn

    settings = Settings(data_dir=data_dir)
    app = create_app(settings, engine=InstantEngine())
    quiet = seed(app, "bench-quiet", "disabled")
    limited = seed_limited(app)
    heap.enable()  # as arkor cloud serve does
    edge_app, recorder = app.state.edge, app.state.recorder

    async def bench_app(scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/bench/"):
            await app(scope, receive, send)
            return
        if path == "/bench/metering/on":
            edge_app.recorder = recorder
        elif path == "/bench/metering/off":
            edge_app.recorder = None
        body = json.dumps({"cpu": time.process_time(), "quiet": quiet,
                           "limited": limited}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    uvicorn.Server(server_config(bench_app, settings, host="127.0.0.1", port=port)).run()


async def over_http() -> Comparison:
    """Metering + limits on (the limited deployment, metering on) against off (the quiet one,
    metering off) through a real server: the server's CPU time per call, interleaved."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    found = Comparison()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), tmp])
        try:
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(
                    max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)) as client:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        seen = (await client.get("/bench/cpu")).json()
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline or server.poll() is not None:
                            raise RuntimeError("the bench's server did not start") from None
                        await asyncio.sleep(0.2)
                sides = {True: ("limited", "on"), False: ("quiet", "off")}

                async def run(on: bool, total: int) -> float:
                    slug, key = seen[sides[on][0]]
                    path = f"/d/{slug}/v1/chat/completions"
                    headers = {"authorization": f"Bearer {key}",
                               "content-type": "application/json"}
                    began = (await client.get(f"/bench/metering/{sides[on][1]}")).json()["cpu"]

                    async def one() -> None:
                        answer = await client.post(path, content=BODY, headers=headers)
                        assert answer.status_code == 200, answer.text

                    await latencies(one, total)
                    return ((await client.get("/bench/cpu")).json()["cpu"] - began) / total

                for on in (True, False):  # warm up both sides
                    await run(on, 400)
                per_round = REQUESTS // ROUNDS * 2
                for index in range(ROUNDS):
                    spent = {}
                    for on in ((True, False) if index % 2 == 0 else (False, True)):
                        spent[on] = await run(on, per_round)
                    found.on.append(spent[True])
                    found.off.append(spent[False])
                    found.cpu_ratios.append(spent[True] / spent[False])
        finally:
            server.terminate()
            server.wait(timeout=30)
    return found

if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        asyncio.run(main())
