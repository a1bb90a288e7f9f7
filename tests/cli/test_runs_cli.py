"""`arkor endpoints runs` against a real control plane over HTTP, the runs made by real calls
to the deployment's edge. The engine is the scripted double: what is listed, shown, marked,
deleted and exported is the edge's and the control plane's doing, not the model's."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from arkor.engine.base import EngineUnavailable
from tests.cli.conftest import Run, cli_runner
from tests.conftest import CloudServer
from tests.doubles.engine import ScriptedEngine, fails_after
from tests.scripted import scripted_world

EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def backend() -> str:
    """SQLite only: the CLI prints what the runs API answers, tested on both databases in
    tests/edge/test_runs.py."""
    return "sqlite"


world = scripted_world("cli-runs")


@pytest.fixture
def engine(world: tuple[CloudServer, ScriptedEngine]) -> ScriptedEngine:
    world[1].script()
    return world[1]


@pytest.fixture
def arkor(world: tuple[CloudServer, ScriptedEngine], monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", world[0].url)
    monkeypatch.setenv("COLUMNS", "250")
    return cli_runner()


@dataclass
class Bot:
    slug: str
    id: str
    base_url: str
    key: str
    key_id: str

    def ask(self, question: str, **options: object) -> None:
        client = openai.OpenAI(base_url=self.base_url, api_key=self.key, max_retries=0)
        client.chat.completions.create(  # type: ignore[call-overload]
            model="x", messages=[{"role": "user", "content": question}], **options)


@pytest.fixture
def bot(arkor: Run, engine: ScriptedEngine) -> Bot:
    """Signed in, with an endpoint and a key: the way a user gets there."""
    arkor("login", "--anonymous")
    slug = f"runs-{uuid.uuid4().hex[:8]}"
    deployment = json.loads(arkor("endpoints", "create", slug, "--base-model", EMBEDDED,
                                  "--json").stdout)
    key = json.loads(arkor("endpoints", "keys", "create", slug, "--label", "prod",
                           "--json").stdout)
    return Bot(deployment["slug"], deployment["id"], deployment["baseUrl"], key["plaintext"],
               key["id"])


def wait_runs(arkor: Run, bot: Bot, count: int) -> list[dict]:
    """The runs once ``count`` are stored (the recorder writes twice a second)."""
    deadline = time.monotonic() + 10
    while True:
        runs = json.loads(arkor("endpoints", "runs", "list", bot.slug, "--json").stdout)["runs"]
        if len(runs) >= count or time.monotonic() > deadline:
            assert len(runs) == count, runs
            return list(runs)
        time.sleep(0.1)


def traffic(arkor: Run, bot: Bot, engine: ScriptedEngine, questions: int = 3) -> list[dict]:
    """``questions`` answered calls, then one the engine fails: newest first."""
    for i in range(questions):
        bot.ask(f"question {i}", temperature=0, max_tokens=5)
    engine.script(fails_after(("Hel",), EngineUnavailable("the engine stopped")))
    with pytest.raises(openai.APIStatusError):
        bot.ask("doomed question")
    return wait_runs(arkor, bot, questions + 1)


def listed_ids(arkor: Run, bot: Bot, *flags: str) -> list[str]:
    page = json.loads(arkor("endpoints", "runs", "list", bot.slug, *flags, "--json").stdout)
    return [run["id"] for run in page["runs"]]


def table_rows(table: str) -> list[str]:
    """Each row of a Rich table as one string (a cell that wrapped comes in pieces)."""
    rows: list[str] = []
    for line in table.splitlines():
        if re.search(r"\brun_[0-9a-f]{32}\b", line):
            rows.append(line)
        elif rows and line.startswith("│"):
            rows[-1] += "\n" + line
    return rows


def test_list_shows_each_run_newest_first(arkor, bot, engine) -> None:
    runs = traffic(arkor, bot, engine)
    assert [r["promptPreview"] for r in runs] == [
        "doomed question", "question 2", "question 1", "question 0"]
    table = arkor("endpoints", "runs", "list", bot.slug).stdout
    for header in ("TIME", "STATUS", "KEY", "TOKENS IN/OUT", "TTFT", "LATENCY", "MARK",
                   "PROMPT → ANSWER", "ID"):
        assert header in table
    rows = table_rows(table)
    assert [next(r["id"] for r in runs if r["id"] in row) for row in rows] == [
        r["id"] for r in runs]
    failed, newest_answered = rows[0], rows[1]
    assert "failed" in failed and "doomed question → Hel" in failed
    assert "The inference engine" in failed  # the error, after the partial answer
    assert "completed" in newest_answered and "7/3" in newest_answered
    assert "question 2 → Hello there!" in newest_answered
    assert f"{runs[1]['keyPrefix']}…" in newest_answered and bot.key not in table
    assert f"{runs[1]['latencyMs']} ms" in newest_answered
    # By id as by slug.
    assert listed_ids(arkor, Bot(bot.id, "", "", "", "")) == [r["id"] for r in runs]


def test_list_filters_and_pages(arkor, bot, engine) -> None:
    runs = traffic(arkor, bot, engine)
    ids = [r["id"] for r in runs]
    assert listed_ids(arkor, bot, "--status", "failed") == ids[:1]
    assert listed_ids(arkor, bot, "--search", "QUESTION 1") == [ids[2]]
    assert listed_ids(arkor, bot, "--key", bot.key_id) == ids
    assert listed_ids(arkor, bot, "--key", "another-key") == []
    assert listed_ids(arkor, bot, "--since", "2999-01-01") == []
    assert listed_ids(arkor, bot, "--until", "2999-01-01T00:00:00Z") == ids
    assert listed_ids(arkor, bot, "--since", "2000-01-01T00:00:00+09:00") == ids
    assert listed_ids(arkor, bot, "--since", "2000-01-01T00:00") == ids  # sent as UTC
    assert "No runs match." in arkor("endpoints", "runs", "list", bot.slug, "--mark",
                                     "good").stdout

    first = json.loads(arkor("endpoints", "runs", "list", bot.slug, "--limit", "3",
                             "--json").stdout)
    assert [r["id"] for r in first["runs"]] == ids[:3] and first["nextCursor"]
    assert listed_ids(arkor, bot, "--limit", "3", "--cursor", first["nextCursor"]) == ids[3:]
    every = json.loads(arkor("endpoints", "runs", "list", bot.slug, "--limit", "1", "--all",
                             "--json").stdout)
    assert [r["id"] for r in every["runs"]] == ids and every["nextCursor"] is None
    paged = arkor("endpoints", "runs", "list", bot.slug, "--limit", "2").stdout
    assert ids[1] in paged and ids[2] not in paged
    assert "More runs: add --all, or --cursor " in paged


def test_list_refuses_bad_filters_naming_the_flag(arkor, bot) -> None:
    assert "--since 'yesterday' is not an ISO time" in arkor(
        "endpoints", "runs", "list", bot.slug, "--since", "yesterday", code=1).stderr
    assert "--status must be completed, failed or cancelled" in arkor(
        "endpoints", "runs", "list", bot.slug, "--status", "ok", code=1).stderr
    assert "--mark must be good or bad" in arkor(
        "endpoints", "runs", "list", bot.slug, "--mark", "great", code=1).stderr
    assert "limit" in arkor("endpoints", "runs", "list", bot.slug, "--limit", "0",
                            code=1).stderr
    assert "cursor" in arkor("endpoints", "runs", "list", bot.slug, "--cursor", "junk",
                             code=1).stderr
    assert "not found" in arkor("endpoints", "runs", "list", "no-such-bot", code=1).stderr


def test_an_endpoint_without_runs_says_why(arkor, bot) -> None:
    assert "No runs yet" in arkor("endpoints", "runs", "list", bot.slug).stdout
    arkor("endpoints", "update", bot.slug, "--retention", "disabled")
    quiet = arkor("endpoints", "runs", "list", bot.slug).stdout
    assert "retention disabled" in quiet and "--retention unlimited" in quiet


def test_get_shows_the_messages_answer_parameters_and_error(arkor, bot, engine) -> None:
    bot.ask("[red]not markup[/red]", temperature=0, max_tokens=5, user="u-1")
    engine.script(fails_after(("Hel",), EngineUnavailable("the engine stopped")))
    with pytest.raises(openai.APIStatusError):
        bot.ask("doomed question")
    failed, answered = wait_runs(arkor, bot, 2)

    shown = arkor("endpoints", "runs", "get", bot.slug, answered["id"]).stdout
    assert "user: [red]not markup[/red]" in shown
    assert "answer: Hello there!" in shown
    assert "max_tokens=5" in shown and "temperature=0" in shown and "user=u-1" in shown
    assert "completed (HTTP 200)" in shown and "chat.completions" in shown
    assert "7 in, 3 out" in shown and f"{answered['keyPrefix']}… ({bot.key_id})" in shown
    assert answered["requestId"] in shown and EMBEDDED in shown and "Error" not in shown

    whole = json.loads(arkor("endpoints", "runs", "get", bot.slug, answered["id"],
                             "--json").stdout)
    assert whole["request"]["messages"] == [{"role": "user", "content": "[red]not markup[/red]"}]
    assert whole["response"]["choices"][0]["message"]["content"] == "Hello there!"

    broken = arkor("endpoints", "runs", "get", bot.slug, failed["id"]).stdout
    assert "failed (HTTP 503)" in broken and "the engine stopped" in broken
    assert "user: doomed question" in broken
    assert "not found" in arkor("endpoints", "runs", "get", bot.slug, "no-such-run",
                                code=1).stderr


def test_mark_and_clear(arkor, bot, engine) -> None:
    runs = traffic(arkor, bot, engine, questions=2)
    target = runs[1]["id"]
    assert f"Marked run {target} good." in arkor("endpoints", "runs", "mark", bot.slug, target,
                                                 "good").stdout
    assert listed_ids(arkor, bot, "--mark", "good") == [target]
    marked = json.loads(arkor("endpoints", "runs", "mark", bot.slug, target, "bad",
                              "--json").stdout)
    assert marked["mark"] == "bad" and marked["request"]["messages"]
    table = arkor("endpoints", "runs", "list", bot.slug).stdout
    assert "│ bad " in next(row for row in table_rows(table) if target in row)
    assert f"Cleared the mark of run {target}." in arkor("endpoints", "runs", "mark", bot.slug,
                                                         target, "none").stdout
    assert listed_ids(arkor, bot, "--mark", "bad") == []
    assert "good, bad or none" in arkor("endpoints", "runs", "mark", bot.slug, target, "great",
                                        code=1).stderr


def test_delete_one_or_all(arkor, bot, engine) -> None:
    runs = traffic(arkor, bot, engine, questions=2)
    assert f"Deleted run {runs[0]['id']}." in arkor("endpoints", "runs", "delete", bot.slug,
                                                    runs[0]["id"]).stdout
    assert "not found" in arkor("endpoints", "runs", "get", bot.slug, runs[0]["id"],
                                code=1).stderr
    assert "RUN_ID, or --all" in arkor("endpoints", "runs", "delete", bot.slug, code=1).stderr
    assert "RUN_ID, or --all" in arkor("endpoints", "runs", "delete", bot.slug, runs[1]["id"],
                                       "--all", code=1).stderr
    refused = arkor("endpoints", "runs", "delete", bot.slug, "--all", code=1).stderr
    assert "pass --yes" in refused  # no terminal to confirm
    assert len(listed_ids(arkor, bot)) == 2
    assert f"Deleted 2 runs of {bot.slug}." in arkor("endpoints", "runs", "delete", bot.slug,
                                                     "--all", "--yes").stdout
    assert listed_ids(arkor, bot) == []


def test_export_writes_the_chat_dataset_and_says_what_it_skipped(
        arkor, bot, engine, tmp_path: Path) -> None:
    runs = traffic(arkor, bot, engine)
    out = tmp_path / "runs.jsonl"
    said = arkor("endpoints", "runs", "export", bot.slug, "--out", str(out)).stdout
    assert f"Wrote 3 lines to {out} from {bot.slug}" in said
    assert "1 run skipped (failed, cancelled, tool-call or non-text runs" in said
    assert f"arkor train --dataset {out}" in said
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == [{"messages": [{"role": "user", "content": f"question {i}"},
                                   {"role": "assistant", "content": "Hello there!"}]}
                     for i in (2, 1, 0)]

    arkor("endpoints", "runs", "mark", bot.slug, runs[2]["id"], "good")
    counts = json.loads(arkor("endpoints", "runs", "export", bot.slug, "--out", str(out),
                              "--good-only", "--json").stdout)
    assert counts == {"out": str(out), "exported": 1, "skipped": 0}
    assert "question 1" in out.read_text() and len(out.read_text().splitlines()) == 1
    assert "leave out --mark bad" in arkor("endpoints", "runs", "export", bot.slug, "--out",
                                           str(out), "--good-only", "--mark", "bad",
                                           code=1).stderr

    none = arkor("endpoints", "runs", "export", bot.slug, "-o", str(out), "--search", "zzz")
    assert "Wrote 0 lines" in none.stdout and "none skipped" in none.stdout
    assert out.read_text() == ""
    assert "Cannot write" in arkor("endpoints", "runs", "export", bot.slug, "--out",
                                   str(tmp_path / "missing" / "x.jsonl"), code=1).stderr


def test_train_from_endpoint_refuses_what_it_cannot_train_on(
        arkor, bot, engine, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, '
                    '{"role": "assistant", "content": "hello"}]}\n')
    assert "one of --dataset FILE" in arkor("train", "--from-endpoint", bot.slug, "--dataset",
                                            str(data), code=1).stderr
    assert "--from-endpoint SLUG" in arkor("train", "--from-endpoint", bot.slug, "--demo",
                                           code=1).stderr
    assert "go with --from-endpoint" in arkor("train", "--dataset", str(data), "--good-only",
                                              code=1).stderr
    assert "go with --from-endpoint" in arkor("train", "--demo", "--out", str(data),
                                              code=1).stderr
    assert "not found" in arkor("train", "--from-endpoint", "no-such-bot", code=1).stderr

    traffic(arkor, bot, engine, questions=0)  # one failed run: nothing to train on
    err = arkor("train", "--from-endpoint", bot.slug, "--out", str(tmp_path / "kept.jsonl"),
                code=1).stderr
    assert f"Nothing to train on: no run of {bot.slug}" in err and "1 run skipped" in err
    assert f"arkor endpoints runs list {bot.slug}" in err
    assert not (tmp_path / "kept.jsonl").exists()
    assert json.loads(arkor("jobs", "list", "--json").stdout) == []
