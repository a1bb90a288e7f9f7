"""Usage metering over real HTTP, with the scripted engine (3 completion tokens and 7 prompt
tokens a call unless told otherwise): every route, streaming with and without include_usage,
a client that walks out, and a deployment that keeps no runs, all counted from the engine's
counts; the usage API's buckets add up to the calls made."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from sqlalchemy import select

from arkor.edge.runs import Recorder, RunTap
from arkor.engine.base import Finished
from arkor.store import deployments, identities, projects
from arkor.store.db import Database, migrate
from arkor.store.deployments import TargetColumns
from arkor.store.tables import UsageBucket
from tests.doubles.engine import PROMPT_TOKENS, Reply
from tests.edge.test_runs import HI, Bot, cloud, engine, new_bot, world  # noqa: F401

CLIENT = {"X-Arkor-Client": "arkor/0.1.0"}
EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"


def usage(url: str, bot: Bot, path: str = "", **params: str) -> dict:
    target = path or f"/v1/endpoints/{bot.deployment_id}/usage"
    response = httpx.get(url + target, params={
        "orgSlug": bot.ws.scope.org_slug, "projectSlug": bot.ws.scope.project_slug, **params},
        headers={**CLIENT, "Authorization": f"Bearer {bot.ws.credentials.token}"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_total(url: str, bot: Bot, requests: int, **params: str) -> dict:
    deadline = time.monotonic() + 10
    while True:
        total = usage(url, bot, **params)["total"]
        if total["requests"] >= requests or time.monotonic() > deadline:
            assert total["requests"] == requests, total
            return dict(total)
        time.sleep(0.1)


def test_every_route_and_stream_is_counted_from_the_engine(cloud, engine) -> None:  # noqa: F811
    bot = new_bot(cloud, "metered")
    client = bot.client()
    client.chat.completions.create(model="x", messages=HI)
    list(client.chat.completions.create(model="x", messages=HI, stream=True))
    list(client.chat.completions.create(model="x", messages=HI, stream=True,
                                        stream_options={"include_usage": True}))
    client.completions.create(model="x", prompt="Once", max_tokens=3)
    client.responses.create(model="x", input="Hi")
    engine.script(Reply(deltas=tuple(f" w{i}" for i in range(40)), pause=0.05))
    with httpx.stream("POST", bot.base_url + "/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {bot.key}"},
                      json={"messages": HI, "stream": True}) as response:
        for line in response.iter_lines():
            if '" w4"' in line:
                break
    total = wait_total(cloud.url, bot, 6)
    time.sleep(0.5)  # the walk-out's engine row ends a moment after the client left
    total = usage(cloud.url, bot)["total"]
    # The walk-out's prompt is reported by the engine only at its end, which never came.
    assert total["promptTokens"] == 5 * PROMPT_TOKENS
    generated = total["completionTokens"] - 5 * 3
    assert 5 <= generated < 40  # the tokens the walk-out was sent, not its max
    assert total["cancelled"] == 1 and total["errors"] == {"4xx": 0, "5xx": 0}
    assert total["latencyMsP50"] is not None and total["latencyMsMean"] > 0


def test_errors_keys_a_quiet_deployment_and_the_project_summary(cloud, engine) -> None:  # noqa: F811
    bot = new_bot(cloud, "metered-keys")
    other_key = bot.ws.client.create_deployment_key(bot.deployment_id, bot.ws.scope,
                                                    label="second")
    bot.client().chat.completions.create(model="x", messages=HI)
    second = openai.OpenAI(base_url=bot.base_url, api_key=other_key.plaintext, max_retries=0)
    second.chat.completions.create(model="x", messages=HI)
    with pytest.raises(openai.BadRequestError):
        second.chat.completions.create(model="x", messages=[])
    total = wait_total(cloud.url, bot, 3)
    assert total["errors"] == {"4xx": 1, "5xx": 0}
    assert usage(cloud.url, bot, keyId=other_key.id)["total"]["requests"] == 2
    assert usage(cloud.url, bot, keyId=bot.key_id)["total"]["requests"] == 1
    hourly = usage(cloud.url, bot)["buckets"]
    assert sum(b["requests"] for b in hourly) == 3 and len(hourly) in (1, 2)
    daily = usage(cloud.url, bot, granularity="day")["buckets"]
    assert sum(b["requests"] for b in daily) == 3

    # Same project, a deployment that keeps no runs: counted all the same.
    quiet = bot.ws.client.create_deployment(
        bot.ws.scope, slug=f"quiet-meter-{bot.ws.org_id[:8]}", run_retention_mode="disabled",
        target={"kind": "base_model", "baseModel": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        auth_mode="none")
    openai.OpenAI(base_url=quiet.base_url, api_key="unused", max_retries=0) \
        .chat.completions.create(model="x", messages=HI)
    deadline = time.monotonic() + 10
    while usage(cloud.url, bot, "/v1/usage")["total"]["requests"] < 4:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    summary = usage(cloud.url, bot, "/v1/usage")
    assert summary["total"]["requests"] == 4 and summary["granularity"] == "day"
    assert summary["total"]["completionTokens"] == 3 * 3  # the 400 generated nothing


def test_a_bad_span_is_400(cloud, engine) -> None:  # noqa: F811
    bot = new_bot(cloud, "metered-span")
    response = httpx.get(f"{cloud.url}/v1/endpoints/{bot.deployment_id}/usage", params={
        "orgSlug": bot.ws.scope.org_slug, "projectSlug": bot.ws.scope.project_slug,
        "from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
        headers={**CLIENT, "Authorization": f"Bearer {bot.ws.credentials.token}"})
    assert response.status_code == 400 and "before" in response.json()["error"]


def test_a_full_run_buffer_loses_runs_but_no_counts(tmp_path) -> None:
    """Calls are counted as they close, not when their runs are written: runs the buffer
    has no room for are dropped (and said to be), their calls are still metered."""
    db = Database(f"sqlite:///{tmp_path / 'arkor.sqlite3'}")
    migrate(db.engine)
    with db.session() as session:
        ident = identities.create_anonymous_identity(session, kind="cli")
        project = projects.create_project(session, org_id=ident.org.id, slug="p", name="p")
        dep = deployments.create_deployment(
            session, org_id=ident.org.id, project_id=project.id, slug="full-buffer",
            target=TargetColumns(target_kind="base_model", base_model=EMBEDDED),
            auth_mode="fixed_api_key", run_retention_mode="days", run_retention_days=7)
        deployment_id, project_id = dep.id, project.id
    recorder = Recorder(db, max_buffered=1)  # never started: flushed by hand
    for _ in range(3):
        tap = RunTap(deployment_id=deployment_id, project_id=project_id,
                     route="chat.completions", request_id="req_1", key_id=None,
                     key_prefix=None, base_model=EMBEDDED, adapter=None)
        tap.event(0, Finished("stop", prompt_tokens=7, completion_tokens=3))
        tap.close(200, stream=False)
        recorder.submit(tap)
    recorder.flush()
    assert (recorder.written, recorder.dropped, recorder.metered) == (1, 2, 3)
    with db.session() as session:
        buckets = session.scalars(select(UsageBucket)).all()
        assert [(b.requests, b.prompt_tokens, b.completion_tokens) for b in buckets] == [
            (3, 21, 9)]
    db.dispose()


def test_a_deleted_deployments_counts_do_not_lose_the_others(tmp_path) -> None:
    """Calls counted for a deployment deleted before the recorder's next write take no bucket
    (it went with its deployment); the calls of the others written in the same batch count."""
    db = Database(f"sqlite:///{tmp_path / 'arkor.sqlite3'}")
    migrate(db.engine)
    made = {}
    with db.session() as session:
        ident = identities.create_anonymous_identity(session, kind="cli")
        project = projects.create_project(session, org_id=ident.org.id, slug="p", name="p")
        for slug in ("kept", "deleted"):
            made[slug] = deployments.create_deployment(
                session, org_id=ident.org.id, project_id=project.id, slug=slug,
                target=TargetColumns(target_kind="base_model", base_model=EMBEDDED),
                auth_mode="fixed_api_key", run_retention_mode="disabled",
                run_retention_days=None).id
        project_id = project.id
    recorder = Recorder(db)  # never started: flushed by hand
    for slug in ("kept", "deleted", "deleted"):
        tap = RunTap(deployment_id=made[slug], project_id=project_id, route="chat.completions",
                     request_id="req_1", key_id=None, key_prefix=None, base_model=EMBEDDED,
                     adapter=None, keep=False)
        tap.event(0, Finished("stop", prompt_tokens=7, completion_tokens=3))
        tap.close(200, stream=False)
        recorder.submit(tap)
    with db.session() as session:
        gone = deployments.deployment_by_slug(session, "deleted")
        assert gone is not None
        deployments.delete_deployment(session, gone)
    recorder.flush()
    assert (recorder.metered, recorder.unmetered) == (1, 2)
    with db.session() as session:
        buckets = session.scalars(select(UsageBucket)).all()
        assert [(b.deployment_id, b.requests) for b in buckets] == [(made["kept"], 1)]
    db.dispose()


def test_a_calls_usage_is_read_from_its_answer_once_and_follows_a_new_answer() -> None:
    """The limiter, the metrics and the recorder each read a call's usage; an answer's is
    worked out once, and a later answer (``runs.answered``) replaces it, never a stale one."""
    from arkor.edge import runs

    tap = RunTap(deployment_id="d", project_id="p", route="chat.completions",
                 request_id="req_1", key_id=None, key_prefix=None, base_model=EMBEDDED,
                 adapter=None)
    tap.event(0, Finished("stop", prompt_tokens=7, completion_tokens=3))
    assert tap.usage() == (7, 3)  # no answer yet: the rows' own counts
    token = runs.current.set(tap)
    try:
        runs.answered({"usage": {"prompt_tokens": 9, "completion_tokens": 4}})
        assert tap.usage() == (9, 4)
        assert tap.answer is not None
        tap.answer["usage"]["completion_tokens"] = 99  # read once: not again
        assert tap.usage() == (9, 4)
        runs.answered({"usage": {"input_tokens": 5, "output_tokens": 2}})
        assert tap.usage() == (5, 2)
    finally:
        runs.current.reset(token)
