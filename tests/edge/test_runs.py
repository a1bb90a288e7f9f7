"""Stored runs over real HTTP, with a scripted engine in place of the model (what is recorded
is the edge's doing, not the model's): each call a deployment serves becomes a run (stream and
not, failed, cancelled by the client) with its fields and never its key; ``disabled`` keeps
nothing; the retention sweep deletes exactly what is too old, one server at a time; the runs
API pages, filters, marks, deletes and exports, scoped like every other route."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import httpx
import openai
import pytest
from sqlalchemy import func, select

from arkor.cloud.retention import LOCK_KEY, RunSweeper
from arkor.edge.app import EdgeApp
from arkor.engine.base import EngineUnavailable
from arkor.sdk import RunFilters
from arkor.store import runs as stored_runs
from arkor.store.tables import Run, utcnow
from tests import scripted
from tests.conftest import CloudServer
from tests.doubles.engine import Reply, ScriptedEngine, fails_after
from tests.edge.conftest import EMBEDDED
from tests.workspace import Workspace, new_workspace

HI = [{"role": "user", "content": "Where is my order?"}]
CLIENT = {"X-Arkor-Client": "arkor/0.1.0"}


@dataclass
class Bot:
    ws: Workspace
    deployment_id: str
    base_url: str
    key: str
    key_id: str

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=self.key, max_retries=0)

    def api(self, url: str, method: str, path: str = "", **kwargs: object) -> httpx.Response:
        params = {"orgSlug": self.ws.scope.org_slug, "projectSlug": self.ws.scope.project_slug,
                  **kwargs.pop("params", {})}  # type: ignore[dict-item]
        return httpx.request(method, f"{url}/v1/endpoints/{self.deployment_id}/runs{path}",
                             params=params, timeout=30, headers={
                                 **CLIENT, "Authorization": f"Bearer {self.ws.credentials.token}"},
                             **kwargs)  # type: ignore[arg-type]


world = scripted.scripted_world("runs")
cloud = scripted.cloud
engine = scripted.engine


def new_bot(cloud: CloudServer, slug: str, **options: object) -> Bot:
    ws = new_workspace(cloud.url)
    deployment = ws.client.create_deployment(
        ws.scope, slug=f"{slug}-{ws.org_id[:8]}",
        target={"kind": "base_model", "baseModel": EMBEDDED}, **options)
    key = ws.client.create_deployment_key(deployment.id, ws.scope, label="runs")
    return Bot(ws, deployment.id, deployment.base_url, key.plaintext, key.id)


@pytest.fixture
def bot(cloud: CloudServer, engine: ScriptedEngine) -> Bot:
    return new_bot(cloud, "runs")


def wait_runs(cloud: CloudServer, bot: Bot, count: int, **params: str) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        runs = bot.api(cloud.url, "GET", params=params).json()["runs"]
        if len(runs) >= count or time.monotonic() > deadline:
            assert len(runs) == count, runs
            return list(runs)
        time.sleep(0.1)


def run_rows(cloud: CloudServer, deployment_id: str) -> int:
    with cloud.app.state.db.session() as session:  # type: ignore[attr-defined]
        return int(session.execute(select(func.count()).select_from(Run).where(
            Run.deployment_id == deployment_id)).scalar_one())


def test_a_call_becomes_a_run_with_its_fields_and_never_its_key(cloud, bot) -> None:
    raw = bot.client().chat.completions.with_raw_response.create(
        model="x", messages=HI, temperature=0, max_tokens=5, user="u-1")
    answer = raw.parse()
    [listed] = wait_runs(cloud, bot, 1)
    run = bot.api(cloud.url, "GET", f"/{listed['id']}").json()["run"]
    assert run["status"] == "completed" and run["httpStatus"] == 200
    assert run["route"] == "chat.completions" and run["stream"] is False
    assert run["requestId"] == raw.headers["x-request-id"]
    assert run["keyId"] == bot.key_id and bot.key.startswith(run["keyPrefix"])
    assert run["baseModel"] == EMBEDDED and run["adapter"] is None
    assert run["request"]["messages"] == HI and run["request"]["max_tokens"] == 5
    assert run["response"]["choices"][0]["message"]["content"] == "Hello there!"
    assert run["response"]["id"] == answer.id
    assert run["usage"] == {"promptTokens": 7, "completionTokens": 3}
    assert run["ttftMs"] is not None and run["latencyMs"] >= run["ttftMs"]
    assert listed["promptPreview"] == "Where is my order?"
    assert listed["answerPreview"] == "Hello there!"
    assert bot.key not in json.dumps(run)


def test_a_stream_is_kept_as_its_assembled_answer(cloud, bot) -> None:
    stream = bot.client().chat.completions.create(model="x", messages=HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) \
        == "Hello there!"
    [run] = wait_runs(cloud, bot, 1)
    assert run["stream"] is True and run["status"] == "completed"
    assert run["answerPreview"] == "Hello there!"
    assert run["usage"] == {"promptTokens": 7, "completionTokens": 3}  # no include_usage


def test_completions_and_responses_are_runs_too(cloud, bot) -> None:
    client = bot.client()
    client.completions.create(model="x", prompt="Once upon a time", max_tokens=3)
    client.responses.create(model="x", input="Hi there", stream=False)
    runs = wait_runs(cloud, bot, 2)
    assert {r["route"] for r in runs} == {"completions", "responses"}
    assert {r["answerPreview"] for r in runs} == {"Hello there!"}
    assert {r["promptPreview"] for r in runs} == {"Once upon a time", "Hi there"}


def test_a_failure_is_a_failed_run_with_the_error(cloud, bot, engine) -> None:
    engine.script(fails_after(("Hel",), EngineUnavailable("the engine stopped")))
    with pytest.raises(openai.APIStatusError):
        bot.client().chat.completions.create(model="x", messages=HI)
    [run] = wait_runs(cloud, bot, 1)
    assert run["status"] == "failed" and run["httpStatus"] == 503
    assert "the engine stopped" in run["error"]
    refused = httpx.post(bot.base_url + "/chat/completions", json={"messages": "nope"},
                         headers={"Authorization": f"Bearer {bot.key}"})
    assert refused.status_code == 400
    bad = wait_runs(cloud, bot, 1, status="failed", q="nope")[0]
    assert bad["httpStatus"] == 400 and bad["error"]


def test_a_client_that_walks_out_leaves_a_cancelled_run(cloud, bot, engine) -> None:
    engine.script(Reply(deltas=tuple(f" w{i}" for i in range(40)), pause=0.05))
    with httpx.stream("POST", bot.base_url + "/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {bot.key}"},
                      json={"messages": HI, "stream": True}) as response:
        for line in response.iter_lines():
            if '" w1"' in line:
                break
    [run] = wait_runs(cloud, bot, 1)
    assert run["status"] == "cancelled" and run["stream"] is True
    assert run["usage"]["completionTokens"] < 40


def test_a_key_that_does_not_open_the_deployment_leaves_no_run(cloud, bot) -> None:
    refused = httpx.post(bot.base_url + "/chat/completions", json={"messages": HI},
                         headers={"Authorization": "Bearer ark_live_wrong"})
    assert refused.status_code == 401
    time.sleep(0.8)  # past a recorder flush
    assert run_rows(cloud, bot.deployment_id) == 0


def test_disabled_retention_stores_nothing_and_says_so(cloud, engine) -> None:
    quiet = new_bot(cloud, "quiet", run_retention_mode="disabled")
    quiet.client().chat.completions.create(model="x", messages=HI)
    list(quiet.client().chat.completions.create(model="x", messages=HI, stream=True))
    time.sleep(0.8)
    assert run_rows(cloud, quiet.deployment_id) == 0
    assert cloud.app.state.recorder.dropped == 0  # type: ignore[attr-defined]


def test_the_sweep_deletes_exactly_what_retention_no_longer_keeps(cloud, bot) -> None:
    for _ in range(3):
        bot.client().chat.completions.create(model="x", messages=HI)
    wait_runs(cloud, bot, 3)
    db = cloud.app.state.db  # type: ignore[attr-defined]
    with db.session() as session:
        rows = list(session.execute(select(Run).where(
            Run.deployment_id == bot.deployment_id)).scalars())
        rows[0].created_at = utcnow() - timedelta(days=3)
        rows[1].created_at = utcnow() - timedelta(days=1, hours=1)
        old = {rows[0].id, rows[1].id}
    sweeper = RunSweeper(db)
    sweeper.sweep()
    assert run_rows(cloud, bot.deployment_id) == 3  # the default keeps 7 days
    bot.ws.client.update_deployment(bot.deployment_id, bot.ws.scope, run_retention_days=2)
    sweeper.sweep()
    left = {r["id"] for r in wait_runs(cloud, bot, 2)}
    assert rows[0].id not in left and rows[1].id in left
    bot.ws.client.update_deployment(bot.deployment_id, bot.ws.scope, run_retention_days=1)
    sweeper.sweep()
    assert {r["id"] for r in wait_runs(cloud, bot, 1)}.isdisjoint(old)
    bot.ws.client.update_deployment(bot.deployment_id, bot.ws.scope,
                                    run_retention_mode="disabled")
    sweeper.sweep()
    assert run_rows(cloud, bot.deployment_id) == 0


def test_two_servers_sweep_one_at_a_time(cloud, backend) -> None:
    db = cloud.app.state.db  # type: ignore[attr-defined]
    second = RunSweeper(db)
    with db.turn(LOCK_KEY) as mine:
        assert mine
        results: list[int | None] = []
        other = threading.Thread(target=lambda: results.append(second.sweep()))
        other.start()
        other.join()
    if backend == "postgres":
        assert results == [None]  # the other server's turn: it skipped this round
    else:
        assert results == [0]  # SQLite: one server
    assert second.sweep() is not None


def test_pages_filters_marks_deletes_and_export(cloud, bot, engine) -> None:
    client = bot.client()
    for i in range(5):
        client.chat.completions.create(model="x", messages=[
            {"role": "user", "content": f"question {i}"}])
    engine.script(fails_after((), EngineUnavailable("down")))
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="x", messages=HI)
    wait_runs(cloud, bot, 6)

    first = bot.api(cloud.url, "GET", params={"limit": 2}).json()
    second = bot.api(cloud.url, "GET", params={"limit": 2,
                                               "cursor": first["nextCursor"]}).json()
    third = bot.api(cloud.url, "GET", params={"limit": 2,
                                              "cursor": second["nextCursor"]}).json()
    pages = [r["id"] for page in (first, second, third) for r in page["runs"]]
    assert len(set(pages)) == 6 and third["nextCursor"] is None
    assert first["runs"][0]["status"] == "failed"  # newest first
    bad = bot.api(cloud.url, "GET", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400 and "cursor" in bad.json()["error"]

    assert [r["promptPreview"] for r in wait_runs(cloud, bot, 1, q="QUESTION 3")] \
        == ["question 3"]
    assert len(wait_runs(cloud, bot, 5, status="completed", keyId=bot.key_id)) == 5
    # A time without a zone is UTC (it was a 500: the column refused a naive datetime).
    assert len(wait_runs(cloud, bot, 6, **{"from": "2000-01-01T00:00:00"})) == 6
    assert wait_runs(cloud, bot, 0, to="2000-01-01") == []

    target = wait_runs(cloud, bot, 1, q="question 1")[0]["id"]
    marked = bot.api(cloud.url, "PATCH", f"/{target}", json={"mark": "good"})
    assert marked.status_code == 200 and marked.json()["run"]["mark"] == "good"
    assert bot.api(cloud.url, "PATCH", f"/{target}", json={"mark": "great"}).status_code == 400

    exported = bot.api(cloud.url, "GET", "/export", params={"mark": "good"})
    assert exported.headers["x-arkor-exported"] == "1"
    assert [json.loads(line) for line in exported.text.splitlines()] == [{"messages": [
        {"role": "user", "content": "question 1"},
        {"role": "assistant", "content": "Hello there!"}]}]
    everything = bot.api(cloud.url, "GET", "/export")
    assert everything.headers["x-arkor-exported"] == "5"
    assert everything.headers["x-arkor-skipped"] == "1"  # the failed one

    other = new_bot(cloud, "other")
    stranger = Bot(other.ws, bot.deployment_id, bot.base_url, bot.key, bot.key_id)
    assert stranger.api(cloud.url, "GET", f"/{target}").status_code == 404
    mine_elsewhere = Bot(bot.ws, other.deployment_id, "", "", "")
    assert mine_elsewhere.api(cloud.url, "GET", f"/{target}").status_code == 404

    assert bot.api(cloud.url, "DELETE", f"/{target}").status_code == 204
    assert bot.api(cloud.url, "GET", f"/{target}").status_code == 404
    deleted = bot.api(cloud.url, "DELETE")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": 5}
    assert run_rows(cloud, bot.deployment_id) == 0


def test_the_sdk_reads_marks_exports_and_deletes_runs(cloud, bot) -> None:
    for i in range(3):
        bot.client().chat.completions.create(model="x", messages=[
            {"role": "user", "content": f"ticket {i}"}])
    wait_runs(cloud, bot, 3)
    sdk, scope = bot.ws.client, bot.ws.scope
    page = sdk.list_runs(bot.deployment_id, scope, limit=2)
    assert len(page.runs) == 2 and page.next_cursor is not None
    every = list(sdk.iter_runs(bot.deployment_id, scope))
    assert [r.prompt_preview for r in every] == ["ticket 2", "ticket 1", "ticket 0"]
    run = sdk.mark_run(bot.deployment_id, every[1].id, "good", scope)
    assert run.mark == "good" and run.request["messages"][0]["content"] == "ticket 1"
    assert sdk.get_run(bot.deployment_id, run.id, scope).response is not None
    good = sdk.export_runs(bot.deployment_id, scope, filters=RunFilters(mark="good"))
    assert good.exported == 1 and "ticket 1" in good.jsonl
    assert sdk.delete_runs(bot.deployment_id, scope) == 3


def test_openai_stored_completions_on_a_deployment(cloud, bot, engine) -> None:
    client = bot.client()
    made = [client.chat.completions.create(
        model="x", messages=[{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": f"ticket {i}"}],
        store=True, metadata={"team": "red" if i % 2 else "blue"}) for i in range(3)]
    client.chat.completions.create(model="x", messages=HI)  # not stored
    ids = [c.id for c in made]
    assert [c.id for c in client.chat.completions.list()] == ids  # asc by default
    newest = client.chat.completions.list(order="desc", limit=2)
    assert [c.id for c in newest.data] == ids[:0:-1] and newest.has_more
    assert [c.id for c in client.chat.completions.list(after=ids[0])] == ids[1:]
    red = client.chat.completions.list(metadata={"team": "red"})
    assert [c.id for c in red] == [ids[1]]

    got = client.chat.completions.retrieve(ids[2])
    assert got.choices[0].message.content == "Hello there!" and got.metadata == {"team": "blue"}
    updated = client.chat.completions.update(ids[2], metadata={"team": "green", "n": "2"})
    assert updated.metadata == {"team": "green", "n": "2"}
    messages = client.chat.completions.messages.list(ids[2])
    assert [(m.role, m.content) for m in messages.data] == [("system", "Be brief."),
                                                            ("user", "ticket 2")]
    assert client.chat.completions.delete(ids[2]).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(ids[2])

    other = new_bot(cloud, "stored-other")
    with pytest.raises(openai.NotFoundError):
        other.client().chat.completions.retrieve(ids[0])  # another deployment's key
    assert list(other.client().chat.completions.list()) == []

    response = client.responses.create(model="x", input="Hi")
    assert response.store is True
    assert client.responses.retrieve(response.id).output_text == "Hello there!"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="x", messages=HI, metadata={"k": 1})  # type: ignore[dict-item]


def test_store_true_on_a_deployment_that_keeps_nothing_is_400(cloud, engine) -> None:
    quiet = new_bot(cloud, "quiet-store", run_retention_mode="disabled")
    with pytest.raises(openai.BadRequestError) as refused:
        quiet.client().chat.completions.create(model="x", messages=HI, store=True)
    assert "run retention is disabled" in refused.value.message
    assert quiet.client().responses.create(model="x", input="Hi").store is False
    with pytest.raises(openai.NotFoundError):
        quiet.client().chat.completions.retrieve("chatcmpl-nothing")


def test_a_request_body_over_256_kib_is_kept_as_a_stub(cloud, bot) -> None:
    big = "word " * 60_000  # 300 KB
    bot.client().chat.completions.create(model="x", messages=[{"role": "user", "content": big}])
    [listed] = wait_runs(cloud, bot, 1)
    run = bot.api(cloud.url, "GET", f"/{listed['id']}").json()["run"]
    assert set(run["request"]) == {"omitted"} and "over 256 KiB" in run["request"]["omitted"]
    assert run["status"] == "completed" and run["response"] is not None


def test_a_stored_answer_is_found_as_soon_as_it_is_received(cloud, bot, engine,
                                                             monkeypatch) -> None:
    """The run goes to the recorder before the answer's last bytes: a client retrieving
    right away does not race what the server does after sending (here made slow, as it can
    be under load) to a 404."""
    real_call = EdgeApp.__call__

    async def slow_after_the_answer(self, scope, receive, send) -> None:
        async def send_then_dawdle(message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                await asyncio.sleep(0.5)

        await real_call(self, scope, receive, send_then_dawdle)

    monkeypatch.setattr(EdgeApp, "__call__", slow_after_the_answer)
    client = bot.client()
    response = client.responses.create(model="x", input="Hi")
    assert client.responses.retrieve(response.id).output_text == "Hello there!"
    made = client.chat.completions.create(model="x", messages=HI, store=True, stream=True)
    chunks = list(made)
    assert client.chat.completions.retrieve(chunks[0].id).choices[0].message.content == (
        "Hello there!")


def test_a_flush_waits_for_the_runs_the_recorder_is_writing(cloud, bot, engine,
                                                             monkeypatch) -> None:
    """A lookup's flush finds the buffer empty while the recorder's thread is still writing
    the runs it took: it returns only once they are committed."""
    recorder = cloud.app.state.recorder  # type: ignore[attr-defined]
    real_add_runs = stored_runs.add_runs
    writing, release = threading.Event(), threading.Event()

    def held_add_runs(session, batch) -> None:
        if threading.current_thread().name == "arkor-runs":
            writing.set()
            release.wait(10)
        real_add_runs(session, batch)

    monkeypatch.setattr(stored_runs, "add_runs", held_add_runs)
    client = bot.client()
    client.responses.create(model="x", input="Hi")
    assert writing.wait(10), "the recorder's thread never wrote"
    flushed = threading.Thread(target=recorder.flush)
    flushed.start()
    flushed.join(0.5)
    assert flushed.is_alive()  # waiting for the thread's write, not returning before it
    release.set()
    flushed.join(10)
    assert not flushed.is_alive()
