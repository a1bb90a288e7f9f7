"""The metrics over real HTTP, read with prometheus_client's parser, on a server with the
scripted engine (7 prompt and 3 completion tokens a call unless told otherwise): calls by
deployment, route, status and outcome, their latency and tokens; jobs by state from the
database; the recorder's drops; the engine's load, read when scraped and never starting it;
rate-limit refusals counted into the app serving the request; apps apart."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client import generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from arkor.cloud.settings import Settings
from arkor.edge.runs import Recorder, RunTap
from arkor.engine.base import EngineUnavailable
from arkor.observability.metrics import Metrics, count_rate_limited
from arkor.server import create_app
from arkor.store.db import Database, migrate
from tests import scripted
from tests.conftest import CloudServer
from tests.doubles.engine import PROMPT_TOKENS, Reply, ScriptedEngine, fails_after
from tests.observability.scrape import Samples, parse, scrape, total, value, wait_for
from tests.servers import LiveServer
from tests.workspace import Workspace, add_job, new_workspace

TOKEN = "metrics-token-for-tests-0123456789"
EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"
HI = [{"role": "user", "content": "Where is my order?"}]
REQUESTS = "arkor_edge_requests_total"
DURATION = "arkor_edge_request_duration_seconds"
TOKENS = "arkor_edge_tokens_total"


@dataclass
class Bot:
    ws: Workspace
    deployment_id: str
    slug: str
    base_url: str
    key: str

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=self.key, max_retries=0)


def new_bot(url: str, slug: str) -> Bot:
    ws = new_workspace(url)
    deployment = ws.client.create_deployment(
        ws.scope, slug=f"{slug}-{ws.org_id[:8]}",
        target={"kind": "base_model", "baseModel": EMBEDDED})
    key = ws.client.create_deployment_key(deployment.id, ws.scope, label="metrics")
    return Bot(ws, deployment.id, deployment.slug, deployment.base_url, key.plaintext)


@contextmanager
def serve(tmp: Path, engine: ScriptedEngine, **settings: object) -> Iterator[CloudServer]:
    options = {"metrics_token": TOKEN, "signup_per_hour": 100_000, **settings}
    config = Settings(data_dir=tmp, **options)  # type: ignore[arg-type]
    app = create_app(config, engine=engine)
    with LiveServer(app) as url:
        yield CloudServer(url=url, settings=config, app=app)


world = scripted.scripted_world("metrics", metrics_token=TOKEN)
cloud = scripted.cloud
engine = scripted.engine


def read(cloud: CloudServer) -> Samples:
    return scrape(cloud.url, TOKEN)


def calls_of(bot: Bot, count: int, cloud: CloudServer) -> Samples:
    return wait_for(lambda: read(cloud),
                    lambda s: total(s, REQUESTS, deployment=bot.deployment_id) >= count)


def test_calls_latency_and_tokens_are_counted_by_deployment_and_route(cloud, engine) -> None:
    bot, other = new_bot(cloud.url, "counted"), new_bot(cloud.url, "other")
    client = bot.client()
    client.chat.completions.create(model="x", messages=HI)
    list(client.chat.completions.create(model="x", messages=HI, stream=True))
    client.completions.create(model="x", prompt="Once", max_tokens=3)
    client.responses.create(model="x", input="Hi")
    other.client().chat.completions.create(model="x", messages=HI)

    samples = calls_of(bot, 4, cloud)
    mine = {"deployment": bot.deployment_id}
    assert total(samples, REQUESTS, **mine) == 4
    for route, calls in (("chat.completions", 2), ("completions", 1), ("responses", 1)):
        assert value(samples, REQUESTS, **mine, route=route, status="200",
                     outcome="completed") == calls
        assert value(samples, f"{DURATION}_count", **mine, route=route) == calls
        assert value(samples, f"{DURATION}_bucket", **mine, route=route, le="+Inf") == calls
        assert value(samples, f"{DURATION}_sum", **mine, route=route) > 0
    assert value(samples, TOKENS, **mine, kind="prompt") == 4 * PROMPT_TOKENS
    assert value(samples, TOKENS, **mine, kind="completion") == 4 * 3

    samples = calls_of(other, 1, cloud)
    assert value(samples, REQUESTS, deployment=other.deployment_id, route="chat.completions",
                 status="200", outcome="completed") == 1
    assert total(samples, REQUESTS, **mine) == 4
    for each in (bot, other):
        assert value(samples, "arkor_deployment_info", deployment=each.deployment_id,
                     slug=each.slug) == 1


def test_failures_and_walk_outs_are_counted_by_status_and_outcome(cloud, engine) -> None:
    bot = new_bot(cloud.url, "failing")
    refused = httpx.post(bot.base_url + "/chat/completions", json={"messages": "nope"},
                         headers={"Authorization": f"Bearer {bot.key}"})
    assert refused.status_code == 400
    engine.script(fails_after(("Hel",), EngineUnavailable("the engine stopped")))
    with pytest.raises(openai.APIStatusError):
        bot.client().chat.completions.create(model="x", messages=HI)
    engine.script(Reply(deltas=tuple(f" w{i}" for i in range(40)), pause=0.05))
    with httpx.stream("POST", bot.base_url + "/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {bot.key}"},
                      json={"messages": HI, "stream": True}) as response:
        for line in response.iter_lines():
            if '" w1"' in line:
                break

    samples = calls_of(bot, 3, cloud)
    chat = {"deployment": bot.deployment_id, "route": "chat.completions"}
    assert value(samples, REQUESTS, **chat, status="400", outcome="failed") == 1
    assert value(samples, REQUESTS, **chat, status="503", outcome="failed") == 1
    assert value(samples, REQUESTS, **chat, status="200", outcome="cancelled") == 1
    assert total(samples, REQUESTS, deployment=bot.deployment_id) == 3
    assert value(samples, f"{DURATION}_count", **chat) == 3


def test_a_refused_key_is_not_a_call_of_the_deployment(cloud, engine) -> None:
    bot = new_bot(cloud.url, "locked")
    refused = httpx.post(bot.base_url + "/chat/completions", json={"messages": HI},
                         headers={"Authorization": "Bearer ark_live_wrong"})
    assert refused.status_code == 401
    time.sleep(0.3)
    assert total(read(cloud), REQUESTS, deployment=bot.deployment_id) == 0


def test_jobs_by_state_are_read_from_the_database(cloud) -> None:
    def jobs(samples: Samples) -> dict[str, float]:
        return {state: value(samples, "arkor_jobs", state=state)
                for state in ("queued", "running", "completed", "failed", "cancelled")}

    before = jobs(read(cloud))
    ws = new_workspace(cloud.url)
    # Not "queued": the supervisor would start a runner for it.
    for status in ("completed", "completed", "failed", "cancelled", "running"):
        add_job(cloud, ws, status=status, name=f"job-{status}")
    after = jobs(read(cloud))
    assert {state: after[state] - before[state] for state in after} == {
        "queued": 0, "running": 1, "completed": 2, "failed": 1, "cancelled": 1}


def closed_tap(deployment_id: str) -> RunTap:
    tap = RunTap(deployment_id=deployment_id, project_id="p", route="chat.completions",
                 request_id="req_1", key_id=None, key_prefix=None, base_model=EMBEDDED,
                 adapter=None)
    tap.close(503, stream=False)
    return tap


def test_every_call_is_counted_and_the_recorders_drops_are_read_at_scrape(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'arkor.sqlite3'}")
    migrate(db.engine)
    recorder: Recorder | None = None
    metrics = Metrics(db=db, runs_dropped=lambda: recorder.dropped if recorder else 0,
                      engine=lambda: None)
    recorder = Recorder(db, max_buffered=1, observer=metrics.observe_call)  # never started
    for _ in range(3):
        recorder.submit(closed_tap("dep-1"))
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, "arkor_runs_dropped_total") == 2
    assert value(samples, REQUESTS, deployment="dep-1", route="chat.completions",
                 status="503", outcome="failed") == 3
    db.dispose()


@dataclass(frozen=True)
class Load:
    running: int
    waiting: int
    adapters_loaded: int
    adapter_loads: int
    adapter_evictions: int
    precision: str


class ReportingEngine(ScriptedEngine):
    """The scripted engine, saying what its one base model is doing as the local engine
    does (``LocalEngine.load_report``; its own numbers are tested in tests/engine)."""

    def load_report(self) -> dict[str, Load]:
        return {EMBEDDED: Load(running=3, waiting=5, adapters_loaded=2, adapter_loads=4,
                               adapter_evictions=2, precision="int4")}


def test_the_engine_load_is_read_at_scrape_and_a_scrape_starts_no_engine(
        tmp_path, world) -> None:
    engine = ReportingEngine()
    with serve(tmp_path, engine) as alone:
        first = read(alone)
        assert not engine.started
        assert not any(name.startswith("arkor_engine_") for name, _ in first)
        bot = new_bot(alone.url, "loaded")
        bot.client().chat.completions.create(model="x", messages=HI)
        samples = calls_of(bot, 1, alone)
        model = {"model": EMBEDDED}
        assert value(samples, "arkor_engine_batch_size", **model) == 3
        assert value(samples, "arkor_engine_queue_depth", **model) == 5
        assert value(samples, "arkor_engine_loaded_adapters", **model) == 2
        assert value(samples, "arkor_engine_adapter_loads_total", **model) == 4
        assert value(samples, "arkor_engine_adapter_evictions_total", **model) == 2
        assert value(samples, "arkor_engine_model_info", **model, precision="int4") == 1
        # Two apps in one process: each has its own registry and counts only its calls.
        shared = read(world[0])
        assert total(shared, REQUESTS, deployment=bot.deployment_id) == 0
        assert total(samples, REQUESTS) == 1


def test_rate_limit_refusals_count_into_the_app_serving_the_request(tmp_path) -> None:
    engine = ScriptedEngine()
    with serve(tmp_path, engine) as alone:

        async def probe(request: Request) -> PlainTextResponse:
            count_rate_limited("dep-1", "requests")
            return PlainTextResponse("counted")

        # A route of the real app, behind its real middleware, where a limiter would call.
        alone.app.add_route("/probe", probe)  # type: ignore[attr-defined]
        for _ in range(2):
            assert httpx.get(alone.url + "/probe").text == "counted"
        count_rate_limited("dep-1", "requests")  # outside a request: not counted
        samples = read(alone)
        assert value(samples, "arkor_edge_rate_limited_total", deployment="dep-1",
                     limit="requests") == 2


def test_the_metrics_module_loads_neither_the_cloud_nor_the_edge() -> None:
    """The edge's rate limiter imports it: it must stay below both (tests/test_layers.py)."""
    script = ("import sys, arkor.observability.metrics\n"
              "print(sorted({m.split('.')[1] for m in sys.modules"
              " if m.startswith(('arkor.cloud', 'arkor.edge'))}))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_the_edge_s_rate_limit_refusals_are_counted(cloud, engine) -> None:
    bot = new_bot(cloud.url, "limited")
    bot.ws.client.update_deployment(bot.deployment_id, bot.ws.scope,
                                    limits={"requestsPerMinute": 1})
    bot.client().chat.completions.create(model="x", messages=HI)
    with pytest.raises(openai.RateLimitError):
        bot.client().chat.completions.create(model="x", messages=HI)
    samples = read(cloud)
    assert value(samples, "arkor_edge_rate_limited_total", deployment=bot.deployment_id,
                 limit="requests") == 1
