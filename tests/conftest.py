"""Fixtures shared by the whole suite.

- Every test gets its own ``ARKOR_HOME`` (credentials), ``HOME`` and working directory, so
  nothing touches the developer's real files.
- ``backend`` runs a test on SQLite and on PostgreSQL: ``ARKOR_TEST_POSTGRES_URL``, else
  127.0.0.1:5432 when it answers; when neither does, the PostgreSQL half is skipped and the
  end of the run says so loudly with the fix (under ``CI`` it fails instead).
- The embedded model is converted once per checkout and kept in pytest's cache directory
  (``.pytest_cache/d/arkor-models``), so only the first run pays the ~20 s conversion.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import POSTGRES_ENV

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_FIX = (
    "start PostgreSQL on 127.0.0.1:5432 with trust auth and a database `test` "
    "(here: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start), "
    f"or point {POSTGRES_ENV} at one"
)
CHROMIUM_FIX = "apt-get install -y chromium   (never `playwright install`)"
_missing: dict[str, str] = {}


def _postgres_answers(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=2):
            return True
    except Exception:
        return False


def pytest_configure(config: pytest.Config) -> None:
    """Use PostgreSQL at its usual local address when it answers, without a variable. Run the
    engine at float32 (see :func:`pin_float32`)."""
    if not os.environ.get(POSTGRES_ENV) and _postgres_answers(DEFAULT_POSTGRES_URL):
        os.environ[POSTGRES_ENV] = DEFAULT_POSTGRES_URL
    share_the_cores()
    pin_float32()


def share_the_cores() -> None:
    """Under pytest-xdist, each worker's torch (and the servers it starts) takes its share of
    the cores rather than all of them: two workers of two threads each on 2 cores spend the
    time they would gain waiting on each other (measured: the engine's tests in 204 s
    against 233 s, 270 against 333 CPU-seconds). ``OMP_NUM_THREADS`` set by the caller wins."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2 or "OMP_NUM_THREADS" in os.environ:
        return
    import torch

    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def pin_float32() -> None:
    """The suite's exactness checks compare the engine with float32 references (plain
    transformers ``generate``, vLLM in float32), so the engine runs at float32 whatever the
    CPU (``auto`` picks int4 or int8 on a CPU with AVX2 or better). Servers the tests start
    inherit ``ARKOR_ENGINE_PRECISION``; for engines made in this process ``auto`` answers
    float32. ``tests/engine/test_precision.py`` covers the other precisions and ``auto``'s
    answer for each kind of CPU."""
    from arkor.engine.local import quantize

    os.environ.setdefault("ARKOR_ENGINE_PRECISION", "float32")
    quantize.cpu_auto_precision = lambda: "float32"  # type: ignore[assignment]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any("postgres" in item.keywords for item in items):
        return
    if os.environ.get(POSTGRES_ENV):
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(f"PostgreSQL is not reachable and CI is set: {POSTGRES_FIX}")
    _missing["PostgreSQL"] = POSTGRES_FIX
    skip = pytest.mark.skip(reason=f"PostgreSQL is not reachable: {POSTGRES_FIX}")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def note_missing(what: str, fix: str) -> None:
    """Record a part of the machine the suite could not use; reported loudly at the end."""
    _missing[what] = fix


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A pytest-xdist worker hands what it could not use to the controller, which reports."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["arkor_missing"] = dict(_missing)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    _missing.update(getattr(node, "workeroutput", {}).get("arkor_missing", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _missing:
        return
    terminalreporter.section("NOT TESTED: missing on this machine", sep="!", red=True, bold=True)
    for what, fix in _missing.items():
        terminalreporter.write_line(f"{what} is missing, so its tests were skipped. Fix: {fix}",
                                    red=True, bold=True)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    workdir = tmp_path / "my-project"
    workdir.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ARKOR_HOME", str(home / ".arkor"))
    monkeypatch.delenv("ARKOR_CLOUD_API_URL", raising=False)
    monkeypatch.delenv("ARKOR_TOKEN", raising=False)
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
    from arkor.cloud.settings import Settings
    from arkor.server import create_app
    from tests.servers import LiveServer, database_url

    data_dir = tmp_path_factory.mktemp(f"cloud-{backend}")
    link_cached_models(data_dir, request.config)
    with database_url(backend, data_dir) as url:
        # Every test signs up from 127.0.0.1: the sign-up rate limit has its own tests
        # (tests/cloud/test_team_auth.py), so it does not bound the fuzzer's attempts here.
        settings = Settings(data_dir=data_dir, database_url=url, signup_per_hour=100_000)
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
