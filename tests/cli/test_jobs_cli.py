"""`arkor train` and `arkor jobs` against a real control plane that really trains."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arkor.cli.main import app
from arkor.sdk import read_state
from arkor.training.gpus import gpu_types_refusal, host_gpu_names
from tests.cli.conftest import cli_runner
from tests.sdk.training_support import (
    EMBEDDED,
    break_target_modules,
    copy_final_adapter,
    share_embedded_model,
    write_bad_dataset,
    write_chat_dataset,
)

TINY_FLAGS = ["--max-steps", "2", "--batch-size", "4", "--max-length", "64",
              "--save-steps", "1"]


@pytest.fixture(scope="module")
def backend() -> str:
    """SQLite only: the CLI prints what the API answers, the same on either database; the job
    and event routes run on PostgreSQL too in tests/cloud and tests/store."""
    return "sqlite"


@pytest.fixture(scope="module")
def training_cloud(cloud, embedded_model_dir):
    share_embedded_model(cloud, embedded_model_dir)
    return cloud


@pytest.fixture(scope="module")
def trained(training_cloud, tmp_path_factory) -> dict[str, str]:
    """`arkor train` run once for the module, from a directory of its own; its ARKOR_HOME
    and state are reused by the tests that inspect the job."""
    base = tmp_path_factory.mktemp("cli-train")
    env = {"ARKOR_HOME": str(base / "home"), "ARKOR_CLOUD_API_URL": training_cloud.url,
           "COLUMNS": "200"}
    work = base / "work"
    work.mkdir()
    dataset = write_chat_dataset(work / "tiny.jsonl")
    old = os.getcwd()
    os.chdir(work)
    try:
        result = CliRunner().invoke(app, ["train", "--dataset", str(dataset), *TINY_FLAGS],
                                    env=env)
    finally:
        os.chdir(old)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    found = re.search(r"Job (\S+) finished with status=completed", result.stdout)
    assert found, result.stdout
    return {"job_id": found.group(1), "stdout": result.stdout, "work": str(work), **env}


@pytest.fixture
def arkor(trained, monkeypatch):
    """The CLI as the user who ran the module's training, in that directory."""
    for key in ("ARKOR_HOME", "ARKOR_CLOUD_API_URL", "COLUMNS"):
        monkeypatch.setenv(key, trained[key])
    monkeypatch.chdir(trained["work"])
    return cli_runner()


def test_train_prints_progress_job_id_and_checkpoints(trained) -> None:
    out = trained["stdout"]
    assert f"Started job {trained['job_id']}" in out
    assert "Saved checkpoint at step 1" in out and "Saved checkpoint at step 2" in out
    assert "Checkpoints: 1, 2" in out
    assert re.search(r"loss \d+\.\d{4}", out)
    assert "2/2" in out  # the progress bar reached maxSteps
    assert f"arkor endpoints create SLUG --final {trained['job_id']}" in out


def test_train_refuses_a_bad_dataset_with_line_numbers(arkor, tmp_path: Path) -> None:
    before = json.loads(arkor("jobs", "list", "--json").stdout)
    bad = write_bad_dataset(tmp_path / "bad.jsonl")
    err = arkor("train", "--dataset", str(bad), code=1).stderr
    assert "line 2" in err and "line 4" in err and "nothing was saved" in err
    assert json.loads(arkor("jobs", "list", "--json").stdout) == before


def test_train_refuses_gpu_types_this_server_lacks(arkor, tmp_path: Path) -> None:
    names = host_gpu_names()
    if gpu_types_refusal(["A100", "H100"], names) is None:
        pytest.skip(f"this host has an A100 or H100: {names}")
    before = json.loads(arkor("jobs", "list", "--json").stdout)
    data = write_chat_dataset(tmp_path / "d.jsonl", count=2)
    err = arkor("train", "--dataset", str(data), "--gpu-type", "A100", "--gpu-type", "H100",
                code=1).stderr
    has = f"this server's GPUs are {', '.join(names)}" if names else "this server trains on CPU"
    assert f"config.gpuTypes: asks for A100 or H100, but {has}" in err
    assert "send [] (or leave gpuTypes out)" in err
    assert json.loads(arkor("jobs", "list", "--json").stdout) == before


def test_train_needs_exactly_one_dataset(arkor, tmp_path: Path) -> None:
    assert "--dataset FILE" in arkor("train", code=1).stderr
    data = write_chat_dataset(tmp_path / "d.jsonl", count=2)
    assert "--demo" in arkor("train", "--dataset", str(data), "--demo", code=1).stderr


def test_jobs_list_and_get(arkor, trained) -> None:
    job_id = trained["job_id"]
    table = arkor("jobs", "list").stdout
    assert "STATUS" in table and "DURATION" in table
    assert "completed" in table and "tiny" in table and job_id in table
    [listed] = [j for j in json.loads(arkor("jobs", "list", "--json").stdout)
                if j["id"] == job_id]
    assert listed["config"]["maxSteps"] == 2 and listed["config"]["saveSteps"] == 1
    details = arkor("jobs", "get", job_id).stdout
    assert "completed" in details and "Checkpoints" in details and "1, 2" in details
    assert json.loads(arkor("jobs", "get", job_id, "--json").stdout)["checkpoints"][1][
        "step"] == 2
    assert "not found" in arkor("jobs", "get", "nope", code=1).stderr


def test_jobs_events_json_lines_and_resume(arkor, trained) -> None:
    job_id = trained["job_id"]
    lines = [json.loads(line) for line in
             arkor("jobs", "events", job_id, "--json").stdout.splitlines()]
    types = [line["type"] for line in lines]
    assert types[0] == "training.started" and types[-2:] == ["training.completed", "end"]
    assert types.count("checkpoint.saved") == 2
    cut = lines[1]["id"]
    later = [json.loads(line) for line in arkor(
        "jobs", "events", job_id, "--json", "--no-follow", "--last-event-id", cut
    ).stdout.splitlines()]
    assert later == lines[2:]
    human = arkor("jobs", "events", job_id).stdout
    assert "training.log step=1 loss=" in human and "end" not in human.split()


def test_jobs_cancel(arkor, trained, tmp_path: Path) -> None:
    err = arkor("jobs", "cancel", trained["job_id"], code=1).stderr
    assert "Job is already completed" in err
    started = json.loads(arkor("train", "--demo", "--max-steps", "500", "--no-wait",
                               "--json").stdout)
    assert started["status"] in ("queued", "running")
    assert started["name"] == "support-triage"
    assert {k: started["config"][k] for k in ("maxSteps", "batchSize", "loraR", "seed")} == {
        "maxSteps": 500, "batchSize": 8, "loraR": 8, "seed": 42}  # demo settings, flag wins
    cancelled = arkor("jobs", "cancel", started["id"]).stdout
    assert f"Cancelled job support-triage ({started['id']})" in cancelled
    status = json.loads(arkor("jobs", "get", started["id"], "--json").stdout)["status"]
    assert status == "cancelled"
    events = arkor("jobs", "events", started["id"], "--json").stdout.splitlines()
    assert [json.loads(e)["type"] for e in events][-2:] == ["training.cancelled", "end"]


def test_jobs_import(arkor, trained, training_cloud, tmp_path: Path) -> None:
    adapter = copy_final_adapter(training_cloud, trained["job_id"], tmp_path / "good")
    out = arkor("jobs", "import", str(adapter), "--name", "imported").stdout
    assert "Imported imported as job" in out and EMBEDDED in out
    created = json.loads(arkor("jobs", "import", str(adapter), "--name", "again", "--model",
                               EMBEDDED, "--json").stdout)
    assert created["status"] == "completed" and created["hasFinalAdapter"] is True
    broken = break_target_modules(copy_final_adapter(training_cloud, trained["job_id"],
                                                     tmp_path / "bad"))
    err = arkor("jobs", "import", str(broken), "--name", "broken", code=1).stderr
    assert "does not fit" in err and "no_such_proj" in err
    assert "adapter_config.json" in arkor("jobs", "import", str(tmp_path), "--name", "x",
                                          code=1).stderr


def test_read_commands_need_sign_in(training_cloud, monkeypatch) -> None:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", training_cloud.url)
    result = CliRunner().invoke(app, ["jobs", "list"])
    assert result.exit_code == 1 and "Not signed in" in result.stderr
    assert read_state() is None
