"""Fixtures shared by the whole suite.

- Every test gets its own ``ARKOR_HOME`` (credentials), ``HOME`` and working directory, so
  nothing touches the developer's real files.
- ``backend`` runs a test on SQLite and, when ``ARKOR_TEST_POSTGRES_URL`` is set, PostgreSQL.
- The embedded model is converted once per checkout and kept in pytest's cache directory
  (``.pytest_cache/d/arkor-models``), so only the first run pays the ~20 s conversion.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import POSTGRES_ENV

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(POSTGRES_ENV):
        return
    skip = pytest.mark.skip(reason=f"{POSTGRES_ENV} is not set")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    workdir = tmp_path / "my-project"
    workdir.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ARKOR_HOME", str(home / ".arkor"))
    monkeypatch.delenv("ARKOR_CLOUD_API_URL", raising=False)
    monkeypatch.delenv("ARKOR_DATA_DIR", raising=False)
    monkeypatch.delenv("ARKOR_DATABASE_URL", raising=False)
    monkeypatch.chdir(workdir)
    return home


@pytest.fixture(scope="session")
def models_dir(request: pytest.FixtureRequest) -> Path:
    return Path(request.config.cache.mkdir("arkor-models"))


@pytest.fixture(scope="session")
def embedded_model_dir(models_dir: Path) -> Path:
    from arkor.engine.embedded import ensure_embedded_model

    return ensure_embedded_model(models_dir)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def cloud(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[CloudServer]:
    """A real control plane over HTTP, one per test module and backend."""
    from arkor.cloud.app import create_app
    from arkor.cloud.settings import Settings
    from tests.servers import LiveServer, database_url

    data_dir = tmp_path_factory.mktemp(f"cloud-{backend}")
    link_cached_models(data_dir, request.config)
    with database_url(backend, data_dir) as url:
        settings = Settings(data_dir=data_dir, database_url=url)
        app = create_app(settings)
        with LiveServer(app) as base_url:
            yield CloudServer(url=base_url, settings=settings, app=app)


def link_cached_models(data_dir: Path, config: pytest.Config) -> None:
    """Let a test server reuse the embedded model converted once into pytest's cache."""
    from arkor.engine.embedded import MODEL_DIR_NAME

    cached = Path(config.cache.mkdir("arkor-models")) / MODEL_DIR_NAME
    if (cached / "config.json").is_file():
        (data_dir / "models").mkdir(parents=True, exist_ok=True)
        (data_dir / "models" / MODEL_DIR_NAME).symlink_to(cached, target_is_directory=True)


class CloudServer:
    def __init__(self, *, url: str, settings: object, app: object) -> None:
        self.url = url
        self.settings = settings
        self.app = app
