"""An outdated CLI gets one actionable upgrade line and a non-zero exit."""

from __future__ import annotations

from dataclasses import replace

from typer.testing import CliRunner

from arkor.cli.main import app


def test_old_client_is_told_to_upgrade(cloud, monkeypatch, tmp_path) -> None:
    from arkor.server import create_app
    from tests.servers import LiveServer

    settings = replace(cloud.settings, data_dir=tmp_path / "strict",
                       database_url=None, min_client_version="99.0.0")
    with LiveServer(create_app(settings)) as url:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", url)
        result = CliRunner().invoke(app, ["login", "--anonymous"])
    assert result.exit_code == 1
    assert "is no longer supported" in result.stderr
    assert ">=99.0.0" in result.stderr and "pip install -U arkor" in result.stderr
