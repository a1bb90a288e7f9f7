"""Request lines an operator can use: one per request, with the fields, and never a key, a
token, a query string or message content, through a whole lifecycle on a real server."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from arkor._version import SDK_VERSION
from arkor.cloud.settings import Settings
from arkor.middleware.access_log import FIELDS, TEXT_FORMAT, JsonFormatter
from arkor.server import create_app
from tests.doubles.engine import Reply, ScriptedEngine
from tests.servers import LiveServer, database_url

CLIENT = {"X-Arkor-Client": f"arkor/{SDK_VERSION}"}
SECRET_TEXT = "the vault code is purple-elephant-4471"
EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass
class Sent:
    response: httpx.Response
    edge: bool


class Recorder:
    """Every request the test sends, to compare with the lines the server wrote."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)
        self.sent: list[Sent] = []

    def __call__(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        response = self.client.request(method, path, **kwargs)  # type: ignore[arg-type]
        self.sent.append(Sent(response, edge=path.startswith("/d/")))
        return response


@pytest.fixture(scope="module")
def backend() -> str:
    """SQLite only: these layers sit in front of the app and never reach the database."""
    return "sqlite"


@pytest.fixture(scope="module")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp(f"access-{backend}")
    with database_url(backend, data_dir) as url:
        settings = Settings(data_dir=data_dir, database_url=url)
        app = create_app(settings, engine=ScriptedEngine(default=Reply(("Noted", "."))))
        with LiveServer(app, settings=settings) as base:
            yield base


def access_records(caplog: pytest.LogCaptureFixture, count: int) -> list[logging.LogRecord]:
    """The request lines, once ``count`` are written (a line follows its response)."""
    deadline = time.monotonic() + 5
    while True:
        records = [r for r in caplog.records if r.name == "arkor.access"]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.02)


def rendered(records: list[logging.LogRecord]) -> str:
    """Every captured record as ``arkor cloud serve`` writes it, in both formats."""
    text, as_json = logging.Formatter(TEXT_FORMAT), JsonFormatter()
    return "\n".join(f.format(r) for r in records for f in (text, as_json))


def test_a_lifecycle_logs_every_request_and_no_secret(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    call = Recorder(server)
    anon = call("POST", "/v1/auth/anonymous", headers=CLIENT, json={}).json()
    token, org = anon["token"], anon["personalOrg"]["slug"]
    auth = {**CLIENT, "Authorization": f"Bearer {token}"}
    scope = {"orgSlug": org, "projectSlug": "logs"}
    assert call("POST", "/v1/projects", headers=auth, params={"orgSlug": org},
                json={"name": "Logs", "slug": "logs"}).status_code == 201
    deployment = call("POST", "/v1/endpoints", headers=auth, params=scope, json={
        "slug": "log-bot", "target": {"kind": "base_model", "baseModel": EMBEDDED}}
    ).json()["deployment"]
    created = call("POST", f"/v1/endpoints/{deployment['id']}/keys", headers=auth,
                   params=scope, json={"label": "ci"}).json()["key"]
    key = created["plaintext"]
    chat = {"messages": [{"role": "user", "content": SECRET_TEXT}]}
    bearer = {"Authorization": f"Bearer {key}"}
    assert call("POST", "/d/log-bot/v1/chat/completions", headers=bearer,
                json=chat).status_code == 200
    assert call("POST", "/d/log-bot/v1/chat/completions", headers=bearer,
                json={**chat, "stream": True}).status_code == 200
    assert call("GET", "/d/log-bot/v1/models", headers={"x-api-key": key}).status_code == 200
    assert call("DELETE", f"/v1/endpoints/{deployment['id']}/keys/{created['id']}",
                headers=auth, params=scope).is_success
    assert call("POST", "/d/log-bot/v1/chat/completions", headers=bearer,
                json=chat).status_code == 401
    assert call("GET", "/d/log-bot/v1/models", headers={
        "Authorization": f"Bearer {token}"}).status_code == 401
    assert call("GET", "/v1/me", headers=auth).status_code == 200

    lines = [getattr(r, FIELDS) for r in access_records(caplog, len(call.sent))]
    assert len(lines) == len(call.sent)
    for line, sent in zip(lines, call.sent, strict=True):
        request = sent.response.request
        assert line["method"] == request.method and line["path"] == request.url.path
        assert line["status"] == sent.response.status_code
        assert line["request_id"] == sent.response.headers["x-request-id"]
        assert line["duration_ms"] >= 0 and line["client"] == "127.0.0.1"
        if sent.edge:
            assert line["deployment"] == "log-bot"
            sent_key = request.headers.get("x-api-key") or request.headers["authorization"][7:]
            assert line.get("key_prefix") == (created["prefix"] if sent_key == key else None)
        else:
            assert "deployment" not in line and "key_prefix" not in line

    # Not the test's own client, nor uvicorn's access log: it is off, but pytest attaches its
    # capture to non-propagating loggers, which turns it on (test_serving checks the CLI's).
    server_side = [r for r in caplog.records
                   if not r.name.startswith(("httpx", "httpcore", "uvicorn.access"))]
    output = "\n".join(r.getMessage() for r in server_side)
    output += rendered(server_side)
    for secret in (token, key, key[len(created["prefix"]):], SECRET_TEXT, "purple-elephant",
                   f"orgSlug={org}", "Bearer"):
        assert secret not in output, secret


def test_the_control_plane_sets_a_request_id_and_keeps_a_safe_one(server: str) -> None:
    first = httpx.get(server + "/healthz").headers["x-request-id"]
    second = httpx.get(server + "/healthz").headers["x-request-id"]
    assert first.startswith("req_") and first != second
    kept = httpx.get(server + "/healthz", headers={"x-request-id": "trace-42.a:b"})
    assert kept.headers["x-request-id"] == "trace-42.a:b"
    replaced = httpx.get(server + "/healthz", headers={"x-request-id": "a b\"c"})
    assert replaced.headers["x-request-id"].startswith("req_")


def test_a_hostile_path_stays_on_one_quoted_line(server: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    httpx.get(server + "/v1/x%0Astatus=200%20forged=1%22?token=abc")
    [record] = access_records(caplog, 1)
    line = logging.Formatter(TEXT_FORMAT).format(record)
    assert "\n" not in line and "token=abc" not in line
    assert 'path="/v1/x\\nstatus=200 forged=1\\"" status=404' in line
    assert json.loads(JsonFormatter().format(record))["path"] == '/v1/x\nstatus=200 forged=1"'


def test_the_client_address_comes_from_a_trusted_proxy_only(
    server: str, caplog: pytest.LogCaptureFixture, tmp_path
) -> None:
    caplog.set_level(logging.INFO)
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    httpx.get(server + "/healthz", headers=forwarded)  # from 127.0.0.1, trusted by default
    settings = Settings(data_dir=tmp_path, trusted_proxies=("10.0.0.1",))
    with LiveServer(create_app(settings), settings=settings) as untrusting:
        httpx.get(untrusting + "/healthz", headers=forwarded)
    assert [getattr(r, FIELDS)["client"] for r in access_records(caplog, 2)] == [
        "203.0.113.9", "127.0.0.1"]
