"""Where ``/metrics`` is served, over real HTTP: nowhere by default (404); on the main port
only with the operator's bearer token (401 without it, or with any other); on the operator's
port alone when ``ARKOR_METRICS_PORT`` is set (the main port then 404s), behind the Host check
and the token when one is set; a port in use stops the start and names the setting; the
token never shows in the settings' repr."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from arkor.cloud.settings import Settings
from arkor.observability.endpoint import MetricsListener
from arkor.observability.metrics import Metrics
from arkor.server import create_app
from arkor.store.db import Database
from tests.doubles.engine import ScriptedEngine
from tests.observability.scrape import parse, scrape, total, wait_for
from tests.observability.test_metrics import HI, TOKEN, new_bot
from tests.servers import LiveServer, free_port


@contextmanager
def serve(tmp: Path, **options: object) -> Iterator[tuple[str, Settings]]:
    settings = Settings(data_dir=tmp, signup_per_hour=100_000, **options)  # type: ignore[arg-type]
    with LiveServer(create_app(settings, engine=ScriptedEngine())) as url:
        yield url, settings


def test_metrics_are_not_served_without_a_port_or_a_token(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    app = create_app(settings, engine=ScriptedEngine())
    assert app.state.metrics is None
    with LiveServer(app) as url:
        response = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404 and "error" in response.json()


def test_the_main_port_serves_metrics_only_with_the_whole_token(tmp_path) -> None:
    with serve(tmp_path, metrics_token=TOKEN) as (url, _):
        for header in (None, "Bearer", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x",
                       f"Basic {TOKEN}", f"{TOKEN}"):
            response = httpx.get(url + "/metrics",
                                 headers={"Authorization": header} if header else {})
            assert response.status_code == 401, header
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "ARKOR_METRICS_TOKEN" in response.json()["error"]
        answer = httpx.get(url + "/metrics", headers={"Authorization": f"bearer {TOKEN}"})
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "arkor_jobs" in {name for name, _ in parse(answer.text)}
        open_metrics = httpx.get(url + "/metrics", headers={
            "Authorization": f"Bearer {TOKEN}", "Accept": "application/openmetrics-text"})
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
        assert open_metrics.text.endswith("# EOF\n")
        assert httpx.post(url + "/metrics", headers={
            "Authorization": f"Bearer {TOKEN}"}).status_code == 405


def test_the_operator_port_serves_metrics_and_the_main_port_none(tmp_path) -> None:
    port = free_port()
    with serve(tmp_path, metrics_port=port) as (url, _):
        operator = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/metrics").status_code == 404
        bot = new_bot(url, "ported")
        bot.client().chat.completions.create(model="x", messages=HI)
        samples = wait_for(lambda: scrape(operator), lambda s: total(
            s, "arkor_edge_requests_total", deployment=bot.deployment_id) == 1)
        assert total(samples, "arkor_edge_requests_total", deployment=bot.deployment_id) == 1
        assert httpx.get(operator + "/v1/me").status_code == 404  # nothing but /metrics
        stranger = httpx.get(operator + "/metrics", headers={"Host": "evil.example"})
        assert stranger.status_code == 403  # the Host check (DNS rebinding) applies here too


def test_a_token_is_required_on_the_operator_port_too(tmp_path) -> None:
    port = free_port()
    with serve(tmp_path, metrics_port=port, metrics_token=TOKEN) as (url, _):
        operator = f"http://127.0.0.1:{port}"
        assert httpx.get(operator + "/metrics").status_code == 401
        assert httpx.get(url + "/metrics", headers={
            "Authorization": f"Bearer {TOKEN}"}).status_code == 404
        scrape(operator, TOKEN)


def test_a_metrics_port_in_use_stops_the_start_and_names_the_setting(tmp_path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        settings = Settings(data_dir=tmp_path, metrics_port=port)
        db = Database(f"sqlite:///{tmp_path / 'arkor.sqlite3'}")
        metrics = Metrics(db=db, runs_dropped=lambda: 0, engine=lambda: None)
        with pytest.raises(OSError, match=f"127.0.0.1:{port}.*ARKOR_METRICS_PORT"):
            MetricsListener(metrics, settings).start()
        db.dispose()


def test_the_metrics_settings_are_read_checked_and_the_token_hidden(tmp_path) -> None:
    settings = Settings.from_env({"ARKOR_DATA_DIR": str(tmp_path), "ARKOR_METRICS_PORT": "9464",
                                  "ARKOR_METRICS_HOST": "0.0.0.0",
                                  "ARKOR_METRICS_TOKEN": f" {TOKEN}\n"})
    assert (settings.metrics_port, settings.metrics_host) == (9464, "0.0.0.0")
    assert settings.metrics_token == TOKEN and TOKEN not in repr(settings)
    with pytest.raises(ValueError, match="ARKOR_METRICS_TOKEN must be at least 16"):
        Settings(data_dir=tmp_path, metrics_token="short")
    with pytest.raises(ValueError, match="metrics_port"):
        Settings(data_dir=tmp_path, metrics_port=70_000)
    assert not Settings(data_dir=tmp_path).serves_metrics
