"""Fixtures shared by the whole suite.

The embedded model is converted once per checkout and kept in pytest's cache directory
(``.pytest_cache/d/arkor-models``), so only the first run pays the ~20 s conversion.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def models_dir(request: pytest.FixtureRequest) -> Path:
    return Path(request.config.cache.mkdir("arkor-models"))


@pytest.fixture(scope="session")
def embedded_model_dir(models_dir: Path) -> Path:
    from arkor.engine.embedded import ensure_embedded_model

    return ensure_embedded_model(models_dir)
