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
DEFAULT_MAX_CONCURRENT_JOBS = 1
DEFAULT_MAX_UPLOAD_MB = 200
DEFAULT_EDGE_DOMAIN = "localhost"
DEFAULT_ENGINE_MAX_BATCH = 16
DEFAULT_ENGINE_MAX_QUEUE = 64
DEFAULT_ENGINE_MAX_ADAPTERS = 8


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
    Setting(
        "max_concurrent_jobs",
        "ARKOR_MAX_CONCURRENT_JOBS",
        str(DEFAULT_MAX_CONCURRENT_JOBS),
        "Training jobs run at the same time on this machine; the rest wait in the queue.",
    ),
    Setting(
        "max_upload_mb",
        "ARKOR_MAX_UPLOAD_MB",
        str(DEFAULT_MAX_UPLOAD_MB),
        "Largest dataset or adapter upload accepted, in megabytes.",
    ),
    Setting(
        "edge_domain",
        "ARKOR_EDGE_DOMAIN",
        DEFAULT_EDGE_DOMAIN,
        "Requests for Host <slug>.<edge domain> are served by that deployment.",
    ),
    Setting(
        "public_edge_url",
        "ARKOR_PUBLIC_EDGE_URL",
        "path form on the address the caller used",
        "How deployment URLs are shown, with {slug}: e.g. https://{slug}.arkor.example.com.",
    ),
    Setting(
        "engine_max_batch",
        "ARKOR_ENGINE_MAX_BATCH",
        str(DEFAULT_ENGINE_MAX_BATCH),
        "Requests decoded together in one forward pass, per base model.",
    ),
    Setting(
        "engine_max_queue",
        "ARKOR_ENGINE_MAX_QUEUE",
        str(DEFAULT_ENGINE_MAX_QUEUE),
        "Requests that may wait for a batch slot; beyond it the edge answers 429.",
    ),
    Setting(
        "engine_max_adapters",
        "ARKOR_ENGINE_MAX_ADAPTERS",
        str(DEFAULT_ENGINE_MAX_ADAPTERS),
        "LoRA adapters kept loaded per base model (least recently used evicted).",
    ),
)


def default_data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get("ARKOR_DATA_DIR"):
        return Path(environ["ARKOR_DATA_DIR"]).expanduser()
    home = environ.get("ARKOR_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".arkor") / "cloud"


def _int_env(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None = None
    base_models: tuple[BaseModelSpec, ...] = ()
    min_client_version: str = DEFAULT_MIN_CLIENT_VERSION
    max_concurrent_jobs: int = DEFAULT_MAX_CONCURRENT_JOBS
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB
    edge_domain: str = DEFAULT_EDGE_DOMAIN
    public_edge_url: str | None = None
    engine_max_batch: int = DEFAULT_ENGINE_MAX_BATCH
    engine_max_queue: int = DEFAULT_ENGINE_MAX_QUEUE
    engine_max_adapters: int = DEFAULT_ENGINE_MAX_ADAPTERS
    registry: BaseModelRegistry = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_concurrent_jobs < 1:
            raise ValueError("max_concurrent_jobs must be at least 1")
        if self.max_upload_mb < 1:
            raise ValueError("max_upload_mb must be at least 1")
        if self.public_edge_url is not None and "{slug}" not in self.public_edge_url:
            raise ValueError("public_edge_url must contain {slug}, e.g. https://{slug}.example.com")
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
            max_concurrent_jobs=_int_env(
                environ, "ARKOR_MAX_CONCURRENT_JOBS", DEFAULT_MAX_CONCURRENT_JOBS
            ),
            max_upload_mb=_int_env(environ, "ARKOR_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB),
            edge_domain=environ.get("ARKOR_EDGE_DOMAIN") or DEFAULT_EDGE_DOMAIN,
            public_edge_url=environ.get("ARKOR_PUBLIC_EDGE_URL") or None,
            engine_max_batch=_int_env(environ, "ARKOR_ENGINE_MAX_BATCH", DEFAULT_ENGINE_MAX_BATCH),
            engine_max_queue=_int_env(environ, "ARKOR_ENGINE_MAX_QUEUE", DEFAULT_ENGINE_MAX_QUEUE),
            engine_max_adapters=_int_env(
                environ, "ARKOR_ENGINE_MAX_ADAPTERS", DEFAULT_ENGINE_MAX_ADAPTERS
            ),
        )
        given = {k: v for k, v in overrides.items() if v is not None and v != ()}
        return replace(settings, **given) if given else settings


def edge_base_url(settings: Settings, request_base_url: str, slug: str) -> str:
    """The base URL to give an OpenAI SDK for ``slug`` (ends in ``/v1``)."""
    if settings.public_edge_url:
        return settings.public_edge_url.format(slug=slug).rstrip("/") + "/v1"
    return f"{request_base_url.rstrip('/')}/d/{slug}/v1"
