"""The CLI against a real control plane: people get tables, scripts get JSON, errors exit 1."""

from __future__ import annotations

import json
import re
import stat
import uuid

from typer.testing import CliRunner

from arkor.cli.main import app
from arkor.sdk import credentials_path, read_credentials, read_state
from arkor.store import jobs
from arkor.store.tables import utcnow

EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"


def completed_job(cloud) -> str:
    state = read_state()
    assert state is not None
    with cloud.app.state.db.session() as session:
        from arkor.store.tables import Project

        project = session.get(Project, state.project_id)
        job = jobs.create_job(session, org_id=project.org_id, project_id=project.id,
                              name="triage", config={"model": EMBEDDED}, status="completed",
                              completed_at=utcnow())
        jobs.add_checkpoint(session, job_id=job.id, step=20, path="/nowhere")
        return job.id


def test_sign_in_flow(arkor) -> None:
    assert "Not signed in" in arkor("whoami", code=1).stderr
    out = arkor("login", "--anonymous").stdout
    assert "Signed in anonymously" in out
    assert stat.S_IMODE(credentials_path().stat().st_mode) == 0o600
    creds = read_credentials()
    assert "Already signed in" in arkor("login", "--anonymous").stdout
    assert read_credentials() == creds
    who = arkor("whoami").stdout
    assert creds.org_slug in who and "anonymous" in who
    data = json.loads(arkor("whoami", "--json").stdout)
    assert data["orgs"][0]["slug"] == creds.org_slug
    assert creds.token not in who
    assert "--force" in arkor("logout", code=1).stderr  # no terminal to confirm
    assert credentials_path().exists()
    arkor("logout", "--force")
    assert not credentials_path().exists()


def test_oauth_is_refused_clearly(arkor) -> None:
    assert "does not offer OAuth" in arkor("login", "--oauth", code=1).stderr


def test_endpoints_lifecycle(arkor, cloud) -> None:
    arkor("login", "--anonymous")
    assert "No project scope" in arkor("endpoints", "list", code=1).stderr

    slug = f"cli-{read_credentials().org_slug[-6:]}"
    created = arkor("endpoints", "create", slug, "--base-model", EMBEDDED).stdout
    assert f"Created endpoint {slug}" in created and "Base model" in created
    base_url = f"{cloud.url}/d/{slug}/v1"
    assert re.search(rf"^ *URL +{re.escape(base_url)}/chat/completions *$", created, re.M)
    assert re.search(rf"^ *Base URL +{re.escape(base_url)} *$", created, re.M)
    shown = arkor("endpoints", "get", slug).stdout
    assert f"{base_url}/chat/completions" in shown and "Base URL" in shown
    assert read_state() is not None  # the write path bootstrapped the project scope
    err = arkor("endpoints", "create", slug, "--base-model", EMBEDDED, code=1).stderr
    assert "Deployment slug is already taken" in err
    assert "reserved" in arkor("endpoints", "create", "api", "--base-model", EMBEDDED,
                               code=1).stderr
    assert "one of" in arkor("endpoints", "create", "x-y", "--final", "a", "--base-model", "b",
                             code=1).stderr
    assert "JOB:STEP" in arkor("endpoints", "create", "x-y", "--checkpoint", "abc",
                               code=1).stderr

    job_id = completed_job(cloud)
    final = json.loads(arkor("endpoints", "create", f"{slug}-ft", "--final", job_id,
                             "--retention", "days", "--retention-days", "30", "--json").stdout)
    assert final["target"] == {"kind": "adapter", "adapter": {"kind": "final", "jobId": job_id}}
    assert final["baseUrl"] == f"{cloud.url}/d/{slug}-ft/v1"
    assert final["url"] == f"{cloud.url}/d/{slug}-ft/v1/chat/completions"
    assert final["runRetentionDays"] == 30

    listed = arkor("endpoints", "list").stdout
    assert slug in listed and f"Final adapter (job {job_id[:8]})" in listed
    assert [d["slug"] for d in json.loads(arkor("endpoints", "list", "--json").stdout)] == [
        slug, f"{slug}-ft"
    ]

    issued = arkor("endpoints", "keys", "create", f"{slug}-ft", "--label", "production")
    assert "cannot be shown again" in issued.stderr
    plaintext = next(w for w in issued.stdout.split() if w.startswith("ark_live_"))
    keys = arkor("endpoints", "keys", "list", f"{slug}-ft").stdout
    assert plaintext[:17] in keys and plaintext not in keys and "never" in keys
    [key] = json.loads(arkor("endpoints", "keys", "list", f"{slug}-ft", "--json").stdout)
    assert "plaintext" not in key
    arkor("endpoints", "keys", "revoke", f"{slug}-ft", key["id"])
    [key] = json.loads(arkor("endpoints", "keys", "list", f"{slug}-ft", "--json").stdout)
    assert key["enabled"] is False

    moved = json.loads(arkor("endpoints", "update", f"{slug}-ft", "--checkpoint",
                             f"{job_id}:20", "--json").stdout)
    assert moved["target"]["adapter"] == {"kind": "checkpoint", "jobId": job_id, "step": 20}
    assert "no checkpoint at step 7" in arkor("endpoints", "update", f"{slug}-ft",
                                              "--checkpoint", f"{job_id}:7", code=1).stderr
    off = json.loads(arkor("endpoints", "update", f"{slug}-ft", "--disable", "--auth", "none",
                           "--json").stdout)
    assert off["enabled"] is False and off["authMode"] == "none"
    assert "Nothing to change" in arkor("endpoints", "update", slug, code=1).stderr
    shown = arkor("endpoints", "get", final["id"]).stdout
    assert "Checkpoint step 20" in shown and "no" in shown
    assert final["url"] in shown and final["baseUrl"] in shown

    assert "--yes" in arkor("endpoints", "delete", f"{slug}-ft", code=1).stderr
    arkor("endpoints", "delete", f"{slug}-ft", "--yes")
    assert "not found" in arkor("endpoints", "get", f"{slug}-ft", code=1).stderr


def test_explicit_scope_flags(arkor) -> None:
    arkor("login", "--anonymous")
    org = read_credentials().org_slug
    assert "both --org and --project" in arkor("endpoints", "list", "--org", org, code=1).stderr
    err = arkor("endpoints", "list", "--org", org, "--project", "nope", code=1).stderr
    assert "not found" in err
    assert "not a member" in arkor("endpoints", "list", "--org", "someone-else", "--project",
                                   "p", code=1).stderr


def test_unreachable_cloud_is_one_clear_line(monkeypatch) -> None:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", "http://127.0.0.1:9")
    result = CliRunner().invoke(app, ["login", "--anonymous"])
    assert result.exit_code == 1
    assert "Could not reach the Arkor cloud API at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_endpoint_and_key_limits(arkor) -> None:
    arkor("login", "--anonymous")
    slug = f"lim-{read_credentials().org_slug[-6:]}"
    arkor("endpoints", "create", slug, "--base-model", EMBEDDED)
    assert "Limits" in arkor("endpoints", "get", slug).stdout
    out = arkor("endpoints", "limits", slug, "--rpm", "600", "--tpm", "90000").stdout
    assert f"Limits now of endpoint {slug}: 600 requests/min, 90000 tokens/min." in out
    shown = arkor("endpoints", "get", slug).stdout
    assert re.search(r"^ *Limits +600 requests/min, 90000 tokens/min *$", shown, re.M)
    limits = json.loads(arkor("endpoints", "limits", slug, "--tpm", "0", "--concurrent", "4",
                              "--json").stdout)["limits"]
    assert limits == {"requestsPerMinute": 600, "tokensPerMinute": None,
                      "concurrentRequests": 4}

    issued = arkor("endpoints", "keys", "create", slug, "--label", "ci").stdout
    [key] = json.loads(arkor("endpoints", "keys", "list", slug, "--json").stdout)
    assert key["limits"]["requestsPerMinute"] is None and key["prefix"] in issued
    out = arkor("endpoints", "limits", slug, "--key", key["id"], "--rpm", "60").stdout
    assert f"Limits now of key 'ci' of {slug}: 60 requests/min." in out
    assert "60 requests/min" in arkor("endpoints", "keys", "list", slug).stdout
    assert f"Limits of key 'ci' of {slug}: 60 requests/min." in arkor(
        "endpoints", "limits", slug, "--key", key["id"]).stdout
    assert "none" in arkor("endpoints", "limits", slug, "--key", key["id"], "--clear").stdout
    assert "--clear lifts every limit" in arkor("endpoints", "limits", slug, "--clear",
                                                "--rpm", "5", code=1).stderr
    assert "is not a key of" in arkor("endpoints", "limits", slug, "--key", "nope",
                                      code=1).stderr
    assert "not found" in arkor("endpoints", "limits", slug, "--key", "nope", "--rpm", "1",
                                code=1).stderr
    arkor("endpoints", "limits", slug, "--clear")
    assert json.loads(arkor("endpoints", "get", slug, "--json").stdout)["limits"] == {
        "requestsPerMinute": None, "tokensPerMinute": None, "concurrentRequests": None}


def test_an_endpoint_s_expiry_from_the_cli(arkor) -> None:
    arkor("login", "--anonymous")
    slug = f"exp-{uuid.uuid4().hex[:8]}"
    created = json.loads(arkor("endpoints", "create", slug, "--base-model", EMBEDDED,
                               "--expires-in-days", "2", "--json").stdout)
    assert created["expiresAt"] is not None
    shown = arkor("endpoints", "get", slug).stdout
    assert "Expires" in shown and created["expiresAt"][:10] in shown
    cleared = json.loads(arkor("endpoints", "update", slug, "--no-expiry", "--json").stdout)
    assert cleared["expiresAt"] is None
    assert "never" in arkor("endpoints", "get", slug).stdout
    assert "not both" in arkor("endpoints", "update", slug, "--no-expiry", "--expires-in-days",
                               "1", code=1).stderr
    assert "--expires-at" in arkor("endpoints", "update", slug, "--expires-at", "soon",
                                   code=1).stderr
