"""Control-plane settings: each declared once (name, env var, default, help).

``SETTINGS`` feeds the CLI help, :meth:`Settings.from_env` and docs/self-hosting.md (a test
checks that every setting is documented there).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
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
DEFAULT_MAX_BODY_KB = 1024
DEFAULT_BODY_TIMEOUT_S = 30
DEFAULT_HEADER_TIMEOUT_S = 10
DEFAULT_KEEP_ALIVE_S = 5
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_SHUTDOWN_TIMEOUT_S = 10
DEFAULT_TRUSTED_PROXIES = ("127.0.0.1", "::1")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_MAX_TOKENS = 1024
DEFAULT_MAX_TOKENS_CAP = 4096
DEFAULT_SLUG_GRACE_DAYS = 7


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
    Setting(
        "max_body_kb",
        "ARKOR_MAX_BODY_KB",
        str(DEFAULT_MAX_BODY_KB),
        "Largest request body other than an upload (JSON, chat requests), in KiB; more is 413.",
    ),
    Setting(
        "body_timeout_s",
        "ARKOR_BODY_TIMEOUT_S",
        str(DEFAULT_BODY_TIMEOUT_S),
        "Seconds a request body may pause between chunks before the server answers 408.",
    ),
    Setting(
        "header_timeout_s",
        "ARKOR_HEADER_TIMEOUT_S",
        str(DEFAULT_HEADER_TIMEOUT_S),
        "Seconds a connection has to send complete request headers before it is closed.",
    ),
    Setting(
        "keep_alive_s",
        "ARKOR_KEEP_ALIVE_S",
        str(DEFAULT_KEEP_ALIVE_S),
        "Seconds an idle keep-alive connection is kept open.",
    ),
    Setting(
        "max_connections",
        "ARKOR_MAX_CONNECTIONS",
        str(DEFAULT_MAX_CONNECTIONS),
        "Open connections served at once; requests beyond it are answered 503.",
    ),
    Setting(
        "shutdown_timeout_s",
        "ARKOR_SHUTDOWN_TIMEOUT_S",
        str(DEFAULT_SHUTDOWN_TIMEOUT_S),
        "Seconds in-flight requests get to finish after SIGTERM before they are cancelled.",
    ),
    Setting(
        "allowed_hosts",
        "ARKOR_ALLOWED_HOSTS",
        "(loopback, IP addresses and the edge domain)",
        "Extra Host names served, comma-separated; *.example.com wildcards, * for any.",
    ),
    Setting(
        "trusted_proxies",
        "ARKOR_TRUSTED_PROXIES",
        ",".join(DEFAULT_TRUSTED_PROXIES),
        "Proxy addresses (comma-separated, CIDR allowed, * for any) whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed.",
    ),
    Setting(
        "log_format",
        "ARKOR_LOG_FORMAT",
        LOG_FORMATS[0],
        "Log lines as text or json (one object per line), request lines included.",
    ),
    Setting(
        "log_level",
        "ARKOR_LOG_LEVEL",
        "INFO",
        "Least severe log level shown: DEBUG, INFO (one line per request), WARNING or ERROR.",
    ),
    Setting(
        "default_max_tokens",
        "ARKOR_DEFAULT_MAX_TOKENS",
        str(DEFAULT_MAX_TOKENS),
        "Tokens generated for a request that does not set max_tokens.",
    ),
    Setting(
        "max_tokens_cap",
        "ARKOR_MAX_TOKENS_CAP",
        str(DEFAULT_MAX_TOKENS_CAP),
        "Most tokens one request may ask for; a larger max_tokens is refused with a 400.",
    ),
    Setting(
        "dataset_roots",
        "ARKOR_DATASET_ROOTS",
        "(none: only uploaded datasets)",
        'Comma-separated directories whose datasets jobs may name ({"type": "local"} or '
        '"huggingface"); never the data directory.',
    ),
    Setting(
        "slug_grace_days",
        "ARKOR_SLUG_GRACE_DAYS",
        str(DEFAULT_SLUG_GRACE_DAYS),
        "Days a deleted deployment's slug stays reserved to its project; 0 frees it at once.",
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


def parse_dataset_roots(raw: str) -> tuple[Path, ...]:
    return tuple(Path(part.strip()).expanduser() for part in raw.split(",") if part.strip())


def parse_hosts(names: Iterable[str]) -> tuple[str, ...]:
    """Host names as the allow-list compares them: lower case, no spaces, no trailing dot."""
    return tuple(n.strip().lower().rstrip(".") for n in names if n.strip())


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
    max_body_kb: int = DEFAULT_MAX_BODY_KB
    body_timeout_s: int = DEFAULT_BODY_TIMEOUT_S
    header_timeout_s: int = DEFAULT_HEADER_TIMEOUT_S
    keep_alive_s: int = DEFAULT_KEEP_ALIVE_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    shutdown_timeout_s: int = DEFAULT_SHUTDOWN_TIMEOUT_S
    allowed_hosts: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = DEFAULT_TRUSTED_PROXIES
    log_format: str = LOG_FORMATS[0]
    log_level: str = "INFO"
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    max_tokens_cap: int = DEFAULT_MAX_TOKENS_CAP
    dataset_roots: tuple[Path, ...] = ()
    slug_grace_days: int = DEFAULT_SLUG_GRACE_DAYS
    registry: BaseModelRegistry = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_concurrent_jobs < 1:
            raise ValueError("max_concurrent_jobs must be at least 1")
        if not 1 <= self.default_max_tokens <= self.max_tokens_cap:
            raise ValueError("default_max_tokens must be at least 1 and at most max_tokens_cap")
        if self.max_upload_mb < 1:
            raise ValueError("max_upload_mb must be at least 1")
        if self.slug_grace_days < 0:
            raise ValueError("slug_grace_days must be 0 or more")
        if self.public_edge_url is not None and "{slug}" not in self.public_edge_url:
            raise ValueError("public_edge_url must contain {slug}, e.g. https://{slug}.example.com")
        for name in ("max_body_kb", "body_timeout_s", "header_timeout_s", "keep_alive_s",
                     "max_connections", "shutdown_timeout_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        object.__setattr__(self, "log_level", self.log_level.upper())
        object.__setattr__(self, "allowed_hosts", parse_hosts(self.allowed_hosts))
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
            default_max_tokens=_int_env(environ, "ARKOR_DEFAULT_MAX_TOKENS", DEFAULT_MAX_TOKENS),
            max_tokens_cap=_int_env(environ, "ARKOR_MAX_TOKENS_CAP", DEFAULT_MAX_TOKENS_CAP),
            dataset_roots=parse_dataset_roots(environ.get("ARKOR_DATASET_ROOTS", "")),
            slug_grace_days=_int_env(environ, "ARKOR_SLUG_GRACE_DAYS", DEFAULT_SLUG_GRACE_DAYS),
            max_body_kb=_int_env(environ, "ARKOR_MAX_BODY_KB", DEFAULT_MAX_BODY_KB),
            body_timeout_s=_int_env(environ, "ARKOR_BODY_TIMEOUT_S", DEFAULT_BODY_TIMEOUT_S),
            header_timeout_s=_int_env(
                environ, "ARKOR_HEADER_TIMEOUT_S", DEFAULT_HEADER_TIMEOUT_S
            ),
            keep_alive_s=_int_env(environ, "ARKOR_KEEP_ALIVE_S", DEFAULT_KEEP_ALIVE_S),
            max_connections=_int_env(environ, "ARKOR_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS),
            shutdown_timeout_s=_int_env(
                environ, "ARKOR_SHUTDOWN_TIMEOUT_S", DEFAULT_SHUTDOWN_TIMEOUT_S
            ),
            allowed_hosts=parse_hosts(environ.get("ARKOR_ALLOWED_HOSTS", "").split(",")),
            trusted_proxies=parse_hosts(environ.get("ARKOR_TRUSTED_PROXIES", "").split(","))
            or DEFAULT_TRUSTED_PROXIES,
            log_format=(environ.get("ARKOR_LOG_FORMAT") or LOG_FORMATS[0]).lower(),
            log_level=environ.get("ARKOR_LOG_LEVEL") or "INFO",
        )
        given = {k: v for k, v in overrides.items() if v is not None and v != ()}
        return replace(settings, **given) if given else settings


def edge_base_url(settings: Settings, request_base_url: str, slug: str) -> str:
    """The base URL to give an OpenAI SDK for ``slug`` (ends in ``/v1``)."""
    if settings.public_edge_url:
        return settings.public_edge_url.format(slug=slug).rstrip("/") + "/v1"
    return f"{request_base_url.rstrip('/')}/d/{slug}/v1"
