"""Control-plane settings: each declared once (name, env var, default, help).

``SETTINGS`` feeds the CLI help, :meth:`Settings.from_env` and docs/self-hosting.md (a test
checks that every setting is documented there).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from arkor.engine.registry import BaseModelRegistry, BaseModelSpec, parse_base_models_env

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
DEFAULT_MIN_CLIENT_VERSION = "0.1.0"


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data_dir",
        "ARKOR_DATA_DIR",
        "~/.arkor/cloud",
        "Directory for the SQLite database, the converted embedded model and job artifacts.",
    ),
    Setting(
        "database_url",
        "ARKOR_DATABASE_URL",
        "sqlite in the data directory",
        "SQLAlchemy URL of the database, e.g. postgresql://arkor@db/arkor for production.",
    ),
    Setting(
        "base_models",
        "ARKOR_BASE_MODELS",
        "(none)",
        "Extra base models: comma-separated NAME=PATH of Hugging Face model directories.",
    ),
    Setting(
        "min_client_version",
        "ARKOR_MIN_CLIENT_VERSION",
        DEFAULT_MIN_CLIENT_VERSION,
        "Oldest arkor SDK/CLI version accepted; older clients get HTTP 426 with an upgrade hint.",
    ),
)


def default_data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get("ARKOR_DATA_DIR"):
        return Path(environ["ARKOR_DATA_DIR"]).expanduser()
    home = environ.get("ARKOR_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".arkor") / "cloud"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None = None
    base_models: tuple[BaseModelSpec, ...] = ()
    min_client_version: str = DEFAULT_MIN_CLIENT_VERSION
    registry: BaseModelRegistry = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "registry", BaseModelRegistry.with_embedded(self.base_models))

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'arkor.sqlite3'}"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> Settings:
        settings = cls(
            data_dir=default_data_dir(environ),
            database_url=environ.get("ARKOR_DATABASE_URL") or None,
            base_models=parse_base_models_env(environ.get("ARKOR_BASE_MODELS", "")),
            min_client_version=environ.get(
                "ARKOR_MIN_CLIENT_VERSION", DEFAULT_MIN_CLIENT_VERSION
            ),
        )
        given = {k: v for k, v in overrides.items() if v is not None and v != ()}
        return replace(settings, **given) if given else settings
