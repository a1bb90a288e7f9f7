"""The credentials file and cloud URL resolution (contract §2.1, §2.4)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from arkor import (
    AnonymousCredentials,
    OAuthCredentials,
    credentials_path,
    default_arkor_cloud_api_url,
    ensure_credentials,
    read_credentials,
    write_credentials,
)
from arkor.sdk._files import DEFAULT_CLOUD_API_URL


def anon(url: str | None = "http://cloud.example") -> AnonymousCredentials:
    return AnonymousCredentials(token="arkor_at_secret", anonymous_id="a1",
                                arkor_cloud_api_url=url, org_slug="anon-1")


def test_write_is_0600_pretty_json_without_trailing_newline(isolated_home: Path) -> None:
    path = write_credentials(anon())
    assert path == isolated_home / ".arkor" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert not text.endswith("\n")
    assert json.loads(text) == {
        "mode": "anon", "token": "arkor_at_secret", "anonymousId": "a1",
        "arkorCloudApiUrl": "http://cloud.example", "orgSlug": "anon-1",
    }
    assert text == json.dumps(json.loads(text), indent=2)
    assert [p.name for p in path.parent.iterdir()] == ["credentials.json"]  # no temp left


def test_rewrite_keeps_0600_even_if_loosened(isolated_home: Path) -> None:
    path = write_credentials(anon())
    os.chmod(path, 0o644)
    write_credentials(anon("http://other"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_read_round_trip_and_oauth(isolated_home: Path) -> None:
    write_credentials(anon())
    assert read_credentials() == anon()
    oauth = OAuthCredentials(access_token="at", refresh_token="rt", expires_at=1767225600,
                             auth0_domain="d", audience="a", client_id="c")
    write_credentials(oauth)
    assert read_credentials() == oauth
    assert "at" not in repr(oauth).replace("expires_at", "").replace("access_token", "")


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"mode": "anon"}', '{"mode": "x"}'])
def test_missing_or_corrupt_reads_as_none(isolated_home: Path, content: str) -> None:
    assert read_credentials() is None
    credentials_path().parent.mkdir(parents=True)
    credentials_path().write_text(content)
    assert read_credentials() is None


def test_unreadable_file_raises_and_is_never_overwritten(isolated_home: Path) -> None:
    if os.geteuid() == 0:
        # root reads anything; make the path a directory to get a non-ENOENT OSError instead
        credentials_path().mkdir(parents=True)
        with pytest.raises(IsADirectoryError):
            read_credentials()
        with pytest.raises(IsADirectoryError):
            ensure_credentials(base_url="http://127.0.0.1:9")
        assert credentials_path().is_dir()
        return
    path = write_credentials(anon())
    os.chmod(path, 0)
    with pytest.raises(PermissionError):
        read_credentials()


def test_secrets_hidden_from_repr() -> None:
    assert "arkor_at_secret" not in repr(anon())


def test_url_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_arkor_cloud_api_url() == DEFAULT_CLOUD_API_URL
    assert default_arkor_cloud_api_url(anon("http://from-creds///")) == "http://from-creds"
    assert default_arkor_cloud_api_url(anon("")) == ""
    assert default_arkor_cloud_api_url(anon(None)) == DEFAULT_CLOUD_API_URL
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", "http://from-env/")
    assert default_arkor_cloud_api_url(anon("http://from-creds")) == "http://from-env"
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", "")
    assert default_arkor_cloud_api_url(anon("http://from-creds")) == ""


def test_ensure_credentials_bootstraps_against_a_real_server(cloud, isolated_home) -> None:
    creds = ensure_credentials(base_url=cloud.url)
    assert isinstance(creds, AnonymousCredentials)
    assert creds.arkor_cloud_api_url == cloud.url
    assert creds.org_slug.startswith("anon-")
    assert read_credentials() == creds
    assert ensure_credentials(base_url=cloud.url) == creds  # no second sign-up


def test_ensure_credentials_replaces_a_corrupt_file_with_a_warning(cloud, capsys) -> None:
    credentials_path().parent.mkdir(parents=True)
    credentials_path().write_text("{oops")
    creds = ensure_credentials(base_url=cloud.url)
    assert read_credentials() == creds
    err = capsys.readouterr().err
    assert "could not be parsed and is being replaced" in err and "arkor login" in err


def test_ensure_credentials_uses_the_env_url(cloud, monkeypatch) -> None:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", cloud.url)
    assert ensure_credentials().arkor_cloud_api_url == cloud.url
