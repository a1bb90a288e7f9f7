"""One tenant's hostile requests never fail or stall another tenant's, over real HTTP.

Two signed-in callers share one server and one engine. The attacker sends a tiny temperature
(once a NaN softmax that failed every row of the batch), calls an adapter whose weights hold
NaN, and posts multi-megabyte prompts (once tokenized on the event loop, freezing every
route); the victim's three concurrent requests all answer 200, and ``/healthz`` keeps
answering within 100 ms.
"""

from __future__ import annotations

import gc
import json
import math
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from arkor.cloud.settings import Settings
from arkor.server import create_app
from tests.conftest import CloudServer, link_cached_models
from tests.edge.conftest import EMBEDDED
from tests.engine.test_adapters import final_dir, write_poisoned
from tests.servers import LiveServer
from tests.workspace import add_job, new_workspace

VICTIM = {"messages": [{"role": "user", "content": "Name three primary colors."}],
          "max_tokens": 24, "temperature": 0}


@dataclass
class Tenants:
    server: CloudServer
    victim_url: str
    attacker_url: str
    poisoned_url: str


@pytest.fixture(scope="module")
def tenants(tmp_path_factory, request, embedded_model_dir) -> Iterator[Tenants]:
    data_dir = tmp_path_factory.mktemp("tenants")
    link_cached_models(data_dir, request.config)
    # Bodies up to 8 MB reach the engine here, so the prompt itself is what is tested.
    settings = Settings(data_dir=data_dir, max_body_kb=8192)
    app = create_app(settings)
    with LiveServer(app, settings=settings) as url:
        server = CloudServer(url=url, settings=settings, app=app)
        victim, attacker = new_workspace(url, "victim"), new_workspace(url, "attacker")
        base = {"kind": "base_model", "baseModel": EMBEDDED}
        victim_dep = victim.client.create_deployment(victim.scope, slug="victim-bot",
                                                     auth_mode="none", target=base)
        attacker_dep = attacker.client.create_deployment(attacker.scope, slug="attack-bot",
                                                         auth_mode="none", target=base)
        job = add_job(server, attacker, name="nan")
        write_poisoned(final_dir(server, attacker, job), math.nan)
        poisoned = attacker.client.create_deployment(
            attacker.scope, slug="attack-nan", auth_mode="none",
            target={"kind": "adapter", "adapter": {"kind": "final", "jobId": job}})
        httpx.post(victim_dep.url, json=VICTIM, timeout=120).raise_for_status()  # warm up
        yield Tenants(server, victim_dep.url, attacker_dep.url, poisoned.url)


def victim_and_attacker(tenants: Tenants, attacks: list[tuple[str, dict]]
                        ) -> tuple[list[httpx.Response], list[httpx.Response]]:
    with ThreadPoolExecutor(max_workers=len(attacks) + 3) as pool:
        hostile = [pool.submit(httpx.post, url, json=body, timeout=120) for url, body in attacks]
        victims = [pool.submit(httpx.post, tenants.victim_url, json=VICTIM, timeout=120)
                   for _ in range(3)]
        return [f.result() for f in victims], [f.result() for f in hostile]


def test_a_tiny_temperature_fails_nobody(tenants: Tenants) -> None:
    tiny = {**VICTIM, "temperature": 1e-300, "top_p": 0.9}
    victims, hostile = victim_and_attacker(tenants, [(tenants.attacker_url, tiny)] * 2)
    assert [r.status_code for r in victims] == [200, 200, 200], [r.text for r in victims]
    assert [r.status_code for r in hostile] == [200, 200], [r.text for r in hostile]
    # Below 1e-5 a temperature is greedy: the same answer as temperature 0.
    greedy = victims[0].json()["choices"][0]["message"]["content"]
    assert hostile[0].json()["choices"][0]["message"]["content"] == greedy


def test_an_adapter_with_nan_weights_fails_only_its_own_callers(tenants: Tenants) -> None:
    victims, hostile = victim_and_attacker(tenants, [(tenants.poisoned_url, VICTIM)] * 2)
    assert [r.status_code for r in victims] == [200, 200, 200], [r.text for r in victims]
    assert [r.status_code for r in hostile] == [503, 503]
    assert "NaN or infinite" in hostile[0].json()["error"]["message"]


def test_multi_megabyte_prompts_leave_the_server_answering(tenants: Tenants, tmp_path) -> None:
    loaded = next(iter(tenants.server.app.state.engines._engine._schedulers.values())).loaded
    # One far past the context (refused unread) and one just short of the refuse-unread bound
    # (tokenized, off the event loop, then refused as too long).
    huge = "a" * 4_000_000
    long = "lorem ipsum dolor sit amet " * (loaded.max_context * loaded.max_token_chars // 28)
    # Sent by curl, as a stranger would: clients in this process would share the server's GIL.
    attackers = []
    for n, prompt in enumerate((huge, long, huge)):
        body = tmp_path / f"attack-{n}.json"
        body.write_text(json.dumps({**VICTIM, "messages": [{"role": "user", "content": prompt}]}))
        attackers.append(subprocess.Popen(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
             "Content-Type: application/json", "--data-binary", f"@{body}",
             tenants.attacker_url], stdout=subprocess.PIPE, text=True))
    worst, collections = 0.0, []
    # The server runs in this process, whose heap is the whole suite's so far: a full
    # collection walking it (1.4 s once in CI) would stall the server, which a served process
    # does not see (it freezes its heap once its app and models are made: arkor.heap). So the
    # heap is frozen here as a server's is, and any collection that still runs is timed and
    # named if the bound is missed.
    gc.collect()
    gc.freeze()
    timing: dict[str, float] = {}

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            timing["began"] = time.monotonic()
        elif "began" in timing:
            collections.append((info["generation"], time.monotonic() - timing.pop("began")))

    gc.callbacks.append(timed)
    try:
        with httpx.Client(base_url=tenants.server.url, timeout=10) as client:
            while any(a.poll() is None for a in attackers):
                began = time.monotonic()
                assert client.get("/healthz").status_code == 200
                worst = max(worst, time.monotonic() - began)
                time.sleep(0.02)
    finally:
        gc.callbacks.remove(timed)
        gc.unfreeze()
    assert [a.communicate()[0] for a in attackers] == ["400", "400", "400"]
    # Done on the event loop, parsing and tokenizing these prompts would hold every other
    # caller for the whole of it. Off it, a worker thread still holds the interpreter lock for
    # the length of one C call (the JSON parse of a megabytes-long body): 117-228 ms measured
    # on a slow 2-core machine (2026-12-01, the same before and after that day's changes).
    slowest = max(collections, key=lambda c: c[1], default=(None, 0.0))
    assert worst < 0.5, (f"/healthz took {worst * 1000:.0f} ms while prompts were handled; "
                         f"{len(collections)} collections, the longest (generation "
                         f"{slowest[0]}) {slowest[1] * 1000:.0f} ms")
    victims, _ = victim_and_attacker(tenants, [])
    assert [r.status_code for r in victims] == [200, 200, 200]
