"""A real control plane and edge over HTTP with the scripted engine in place of the model, for
the tests where what the edge records, counts or relays is the point, not what the model says.

``world = scripted_world("runs")`` in a test module gives it a module-scoped server per
backend; the ``cloud`` and ``engine`` fixtures here (import them) hand its parts to each test,
the engine's script reset, and check that the edge closed every generation it began.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from arkor.cloud.settings import Settings
from arkor.server import create_app
from tests.conftest import CloudServer
from tests.doubles.engine import ScriptedEngine
from tests.servers import LiveServer, database_url

World = tuple[CloudServer, ScriptedEngine]


@contextmanager
def scripted_cloud(backend: str, data_dir: Path, **settings: Any) -> Iterator[World]:
    engine = ScriptedEngine()
    with database_url(backend, data_dir) as url:
        config = Settings(data_dir=data_dir, database_url=url,
                          **{"signup_per_hour": 100_000, **settings})
        app = create_app(config, engine=engine)
        with LiveServer(app) as base:
            yield CloudServer(url=base, settings=config, app=app), engine


def scripted_world(prefix: str, **settings: Any) -> Callable[..., Iterator[World]]:
    """A module-scoped ``world`` fixture: one scripted server per backend."""

    @pytest.fixture(scope="module")
    def world(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
        with scripted_cloud(backend, tmp_path_factory.mktemp(f"{prefix}-{backend}"),
                            **settings) as made:
            yield made

    return world


@pytest.fixture
def cloud(world: World) -> CloudServer:
    return world[0]


@pytest.fixture
def engine(world: World) -> Iterator[ScriptedEngine]:
    world[1].script()
    yield world[1]
    assert world[1].open_generations == 0, "the edge left an engine generation open"
