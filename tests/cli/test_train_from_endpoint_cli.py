"""`arkor train --from-endpoint`: a deployment's traffic becomes its next adapter, on a real
control plane that really serves (the real model answers) and really trains.

The refusals (an empty export, flags that do not go together) are in test_runs_cli.py, on the
scripted engine."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import openai
import pytest

from arkor.sdk import (
    CloudApiClient,
    ProjectScope,
    default_arkor_cloud_api_url,
    read_credentials,
    read_state,
)
from tests.cli.conftest import Run, cli_runner
from tests.sdk.training_support import EMBEDDED, share_embedded_model

QUESTIONS = ["What is the capital of France?", "Name a primary colour.",
             "What is two plus two?", "Say hello."]
TINY_FLAGS = ["--max-steps", "2", "--batch-size", "2", "--max-length", "64"]


@pytest.fixture(scope="module")
def backend() -> str:
    """SQLite only: the export and the job are the same API calls on either database."""
    return "sqlite"


@pytest.fixture
def arkor(cloud, embedded_model_dir, monkeypatch: pytest.MonkeyPatch) -> Run:
    share_embedded_model(cloud, embedded_model_dir)
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", cloud.url)
    monkeypatch.setenv("COLUMNS", "220")
    return cli_runner()


def wait_runs(arkor: Run, slug: str, count: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        runs = json.loads(arkor("endpoints", "runs", "list", slug, "--json").stdout)["runs"]
        if len(runs) >= count or time.monotonic() > deadline:
            assert len(runs) == count, runs
            return list(runs)
        time.sleep(0.1)


def test_a_deployments_traffic_becomes_its_next_adapter(arkor: Run, tmp_path: Path) -> None:
    arkor("login", "--anonymous")
    slug = f"traffic-{read_credentials().org_slug[-6:]}"  # type: ignore[union-attr]
    endpoint = json.loads(arkor("endpoints", "create", slug, "--base-model", EMBEDDED,
                                "--auth", "none", "--json").stdout)
    client = openai.OpenAI(base_url=endpoint["baseUrl"], api_key="unused", max_retries=0)
    for question in QUESTIONS:
        client.chat.completions.create(model=EMBEDDED, temperature=0, max_tokens=8,
                                       messages=[{"role": "user", "content": question}])
    runs = wait_runs(arkor, slug, len(QUESTIONS))
    good = [runs[0], runs[2]]
    for run in good:
        arkor("endpoints", "runs", "mark", slug, run["id"], "good")
    answers = [json.loads(arkor("endpoints", "runs", "get", slug, run["id"], "--json").stdout)[
        "response"]["choices"][0]["message"]["content"] for run in good]

    out = tmp_path / "traffic.jsonl"
    result = arkor("train", "--from-endpoint", slug, "--good-only", "--out", str(out),
                   *TINY_FLAGS)
    assert f"Exported 2 runs of {slug}; none skipped." in result.stdout
    found = re.search(r"Job (\S+) finished with status=completed", result.stdout)
    assert found, result.stdout

    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"messages": [{"role": "user", "content": run["promptPreview"]},
                      {"role": "assistant", "content": answer}]}
        for run, answer in zip(good, answers, strict=True)]
    job = json.loads(arkor("jobs", "get", found.group(1), "--json").stdout)
    assert job["status"] == "completed" and job["hasFinalAdapter"] is True
    assert job["name"] == "traffic" and job["config"]["maxSteps"] == 2
    credentials, state = read_credentials(), read_state()
    assert credentials is not None and state is not None
    sdk = CloudApiClient(base_url=default_arkor_cloud_api_url(credentials),
                         credentials=credentials)
    scope = ProjectScope(org_slug=state.org_slug, project_slug=state.project_slug)
    [dataset] = [d for d in sdk.list_datasets(scope)
                 if d.id == job["config"]["datasetSource"]["uploadId"]]
    assert dataset.name == "traffic.jsonl" and dataset.num_examples == 2
