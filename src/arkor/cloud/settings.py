"""Control-plane settings: each declared once (name, default, help, kind).

``SETTINGS`` feeds the CLI options and their help, :meth:`Settings.from_env` and
docs/self-hosting.md (a test checks that every setting is documented there).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arkor.contract.models import SIGNUP_POLICIES
from arkor.engine.precision import DEFAULT_PRECISION, PRECISIONS, parse_precision_plan
from arkor.engine.registry import (
    BaseModelRegistry,
    BaseModelSpec,
    parse_base_model_option,
    parse_upstream_option,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
DEFAULT_MIN_CLIENT_VERSION = "0.1.0"
DEFAULT_MAX_CONCURRENT_JOBS = 1
DEFAULT_MAX_UPLOAD_MB = 200
DEFAULT_EDGE_DOMAIN = "localhost"
DEFAULT_ENGINE_MAX_BATCH = 16
DEFAULT_ENGINE_MAX_QUEUE = 64
DEFAULT_ENGINE_MAX_ADAPTERS = 8
DEFAULT_ENGINE_PREFIX_CACHE_MB = 64
DEFAULT_MAX_BODY_KB = 1024
DEFAULT_BODY_TIMEOUT_S = 30
DEFAULT_HEADER_TIMEOUT_S = 10
DEFAULT_KEEP_ALIVE_S = 5
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_SHUTDOWN_TIMEOUT_S = 10
DEFAULT_TRUSTED_PROXIES = ("127.0.0.1", "::1")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_METRICS_HOST = "127.0.0.1"
MIN_METRICS_TOKEN_CHARS = 16
DEFAULT_MAX_TOKENS = 1024
DEFAULT_MAX_TOKENS_CAP = 4096
DEFAULT_MAX_N = 8
DEFAULT_SLUG_GRACE_DAYS = 7
DEFAULT_SIGNUP_PER_HOUR = 30
RATE_LIMIT_FAILURES = ("open", "closed")
DEFAULT_RATE_LIMIT_WINDOW_S = 60
DEFAULT_DNS_TIMEOUT_S = 3
DEFAULT_DOMAIN_CHECK_INTERVAL_S = 3600
# Quotas per org; 0 is no limit (arkor.cloud.quotas).
DEFAULT_QUOTAS = {
    "quota_deployments": 50,
    "quota_keys_per_deployment": 20,
    "quota_datasets": 100,
    "quota_dataset_mb": 2048,
    "quota_queued_jobs": 10,
    "quota_running_jobs": 0,
    "quota_job_steps": 10_000,
    "quota_job_epochs": 20,
    "quota_job_batch_size": 64,
    "quota_job_wall_s": 86_400,
}


def parse_path(raw: str) -> Path:
    return Path(raw.strip()).expanduser()


def parse_host(name: str) -> str:
    """A Host name as the allow-list compares it: lower case, no spaces, no trailing dot."""
    return name.strip().lower().rstrip(".")


def parse_hosts(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(parse_host(n) for n in names if n.strip())


def split_nameserver(value: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT`` or ``[IPV6]:PORT`` → ``(ip, port)``; port 53 when none."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        port = "bad"
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"ARKOR_DNS_NAMESERVERS: {value!r} is not an IP address, or IP:PORT")
    return host, int(port or 53)


def parse_nameserver(raw: str) -> str:
    split_nameserver(raw)
    return raw.strip()


@dataclass(frozen=True)
class Setting:
    """One setting: env var ``ARKOR_<NAME>`` and option ``--<name>`` of type ``kind``.

    With ``item`` the setting is a tuple: comma-separated in the env var, one value per
    repeated ``option`` on the command line, each read by ``item``.
    """

    name: str
    default: str
    help: str
    kind: type = str
    item: Callable[[str], Any] | None = None
    option: str = ""
    metavar: str = ""

    @property
    def env(self) -> str:
        return f"ARKOR_{self.name.upper()}"

    def parse(self, raw: str) -> Any:
        """The value of the env var's text."""
        if self.item is not None:
            return self.items(raw.split(","))
        if self.kind is int:
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"{self.env} must be a whole number, not {raw!r}") from None
        return parse_path(raw) if self.kind is Path else raw

    def items(self, values: Iterable[str]) -> tuple[Any, ...]:
        assert self.item is not None
        return tuple(self.item(value) for value in values if value.strip())


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", "~/.arkor/cloud",
            "Directory for the SQLite database, the converted embedded model and job artifacts.",
            Path),
    Setting("database_url", "sqlite in the data directory",
            "SQLAlchemy URL of the database, e.g. postgresql://arkor@db/arkor for production."),
    Setting("base_models", "(none)",
            "Extra base models: comma-separated NAME=PATH of Hugging Face model directories.",
            item=parse_base_model_option, option="--base-model", metavar="NAME=PATH"),
    Setting("upstreams", "(none: every model is served here)",
            "vLLM servers that serve a base model: comma-separated NAME=URL (one per server; a "
            "name given twice gets both); requests for NAME go there (docs/scale-out.md).",
            item=parse_upstream_option, option="--upstream", metavar="NAME=URL"),
    Setting("upstream_api_key", "(none)",
            "Bearer token the upstream vLLM servers want (their --api-key); prefer the env "
            "var."),
    Setting("public_models", "(every registered base model)",
            "The model menu: comma-separated names of registered base models a model_menu "
            "deployment serves (the request's model picks one); the first is the default.",
            item=str.strip, option="--public-model", metavar="NAME"),
    Setting("min_client_version", DEFAULT_MIN_CLIENT_VERSION,
            "Oldest arkor SDK/CLI version accepted; older clients get HTTP 426 with an upgrade "
            "hint."),
    Setting("max_concurrent_jobs", str(DEFAULT_MAX_CONCURRENT_JOBS),
            "Training jobs run at the same time on this machine; the rest wait in the queue.", int),
    Setting("max_upload_mb", str(DEFAULT_MAX_UPLOAD_MB),
            "Largest dataset or adapter upload accepted, in megabytes.", int),
    Setting("edge_domain", DEFAULT_EDGE_DOMAIN,
            "Requests for Host <slug>.<edge domain> are served by that deployment."),
    Setting("public_edge_url", "path form on the address the caller used",
            "How deployment URLs are shown, with {slug}: e.g. https://{slug}.arkor.example.com."),
    Setting("engine_max_batch", str(DEFAULT_ENGINE_MAX_BATCH),
            "Requests decoded together in one forward pass, per base model.", int),
    Setting("engine_max_queue", str(DEFAULT_ENGINE_MAX_QUEUE),
            "Requests that may wait for a batch slot; beyond it the edge answers 429.", int),
    Setting("engine_max_adapters", str(DEFAULT_ENGINE_MAX_ADAPTERS),
            "LoRA adapters kept loaded per base model (least recently used evicted).", int),
    Setting("engine_prefix_cache_mb", str(DEFAULT_ENGINE_PREFIX_CACHE_MB),
            "Memory for keys and values of prompts and answers seen before, per base model, in "
            "megabytes: a request that starts the same way skips that part of its prefill (0 "
            "turns it off).", int),
    Setting("engine_precision", DEFAULT_PRECISION,
            f"Base model weights and activations: {', '.join(PRECISIONS)} (auto: int4 on a CPU "
            "with AVX-512 or AVX2, float32 on the rest, bfloat16 on CUDA); int8 is weight-only "
            "int8 with bfloat16 activations; int4 is 4-bit groups of 32 weights (lm_head int8). "
            "Base models that differ follow as NAME=PRECISION: auto,my-org/my-model=int8."),
    Setting("max_body_kb", str(DEFAULT_MAX_BODY_KB),
            "Largest request body other than an upload (JSON, chat requests), in KiB; more is "
            "413.", int),
    Setting("body_timeout_s", str(DEFAULT_BODY_TIMEOUT_S),
            "Seconds a request body may pause between chunks before the server answers 408.",
            int),
    Setting("header_timeout_s", str(DEFAULT_HEADER_TIMEOUT_S),
            "Seconds a connection has to send complete request headers before it is closed.",
            int),
    Setting("keep_alive_s", str(DEFAULT_KEEP_ALIVE_S),
            "Seconds an idle keep-alive connection is kept open.", int),
    Setting("max_connections", str(DEFAULT_MAX_CONNECTIONS),
            "Open connections served at once; requests beyond it are answered 503.", int),
    Setting("shutdown_timeout_s", str(DEFAULT_SHUTDOWN_TIMEOUT_S),
            "Seconds in-flight requests get to finish after SIGTERM before they are cancelled.",
            int),
    Setting("allowed_hosts", "(loopback, IP addresses and the edge domain)",
            "Extra Host names served, comma-separated; *.example.com wildcards, * for any.",
            item=parse_host, option="--allowed-host", metavar="NAME"),
    Setting("trusted_proxies", ",".join(DEFAULT_TRUSTED_PROXIES),
            "Proxy addresses (comma-separated, CIDR allowed, * for any) whose X-Forwarded-For "
            "and X-Forwarded-Proto are believed.",
            item=parse_host, option="--trusted-proxy", metavar="ADDRESS"),
    Setting("log_format", LOG_FORMATS[0],
            "Log lines as text or json (one object per line), request lines included."),
    Setting("log_level", "INFO",
            "Least severe log level shown: DEBUG, INFO (one line per request), WARNING or "
            "ERROR."),
    Setting("metrics_port", "0",
            "Port of a listener that serves only Prometheus' GET /metrics, on "
            "ARKOR_METRICS_HOST; the main port then serves none (0: no such listener).", int),
    Setting("metrics_host", DEFAULT_METRICS_HOST,
            "Interface the ARKOR_METRICS_PORT listener binds."),
    Setting("metrics_token", "(none)",
            "Bearer token GET /metrics requires (at least 16 characters; prefer the env var). "
            "Without it or ARKOR_METRICS_PORT, /metrics is not served."),
    Setting("default_max_tokens", str(DEFAULT_MAX_TOKENS),
            "Tokens generated for a request that does not set max_tokens.", int),
    Setting("max_tokens_cap", str(DEFAULT_MAX_TOKENS_CAP),
            "Most tokens one request may ask for; a larger max_tokens is refused with a 400.",
            int),
    Setting("max_n", str(DEFAULT_MAX_N),
            "Most choices (n) one request may ask for; each decodes as its own batch row, and "
            "a larger n is refused with a 400.", int),
    Setting("dataset_roots", "(none: only uploaded datasets)",
            'Comma-separated directories whose datasets jobs may name ({"type": "local"} or '
            '"huggingface"); never the data directory.',
            item=parse_path, option="--dataset-root", metavar="DIR"),
    Setting("slug_grace_days", str(DEFAULT_SLUG_GRACE_DAYS),
            "Days a deleted deployment's slug stays reserved to its project; 0 frees it at "
            "once.", int),
    Setting("signup", "anonymous on a loopback --host, else invite",
            "Who may create an identity: anonymous (anyone, POST /v1/auth/anonymous), invite "
            "(only with an invite code from `arkor cloud invites create`) or disabled (only "
            "users the operator creates)."),
    Setting("anonymous_deployment_days", "0",
            "Days an anonymous identity's deployment lives unless it sets expiresAt itself (and "
            "at most this long); then the edge answers 404 and a sweep deletes it (0: no expiry).",
            int),
    Setting("signup_per_hour", str(DEFAULT_SIGNUP_PER_HOUR),
            "Sign-up attempts (anonymous or with an invite) one client address may make per "
            "hour, all at once or spread out; more are answered 429 with Retry-After.", int),
    Setting("redis_url", "(none: the database keeps them)",
            "Redis URL (redis://host:6379/0) for the edge's rate-limit counters, which every "
            "server process shares; without it they live in PostgreSQL (in memory on SQLite, "
            "which runs one process)."),
    Setting("rate_limit_failure", RATE_LIMIT_FAILURES[0],
            "When the rate-limit counters cannot be reached: open (admit the call, logging a "
            "warning at most once a minute) or closed (answer 503)."),
    Setting("rate_limit_window_s", str(DEFAULT_RATE_LIMIT_WINDOW_S),
            "Seconds in one rate-limit window: requestsPerMinute and tokensPerMinute are "
            "counted per window (60; shorter only for tests).", int),
    Setting("dns_nameservers", "(the system resolver)",
            "Name servers (comma-separated IP or IP:PORT) that custom domains' TXT "
            "challenges are looked up with, e.g. 1.1.1.1,8.8.8.8.",
            item=parse_nameserver, option="--dns-nameserver", metavar="IP[:PORT]"),
    Setting("dns_timeout_s", str(DEFAULT_DNS_TIMEOUT_S),
            "Seconds one TXT challenge lookup may take, all tries included; past it a verify "
            "answers 502 and the domain keeps its state.", int),
    Setting("domain_check_interval_s", str(DEFAULT_DOMAIN_CHECK_INTERVAL_S),
            "Seconds between re-checks of each custom domain's TXT record: a pending one whose "
            "record appeared is verified, a verified one whose record is gone stops being "
            "served (0: only on demand).", int),
    *(Setting(name, str(DEFAULT_QUOTAS[name]), text, int) for name, text in (
        ("quota_deployments", "Deployments one org may have (0: no limit); one more is 403."),
        ("quota_keys_per_deployment",
         "Unrevoked API keys one deployment may have (0: no limit); one more is 403."),
        ("quota_datasets", "Uploaded datasets one org may keep (0: no limit); one more is 403."),
        ("quota_dataset_mb",
         "Megabytes of uploaded datasets one org may keep (0: no limit); an upload past it is "
         "403 and nothing of it is kept."),
        ("quota_queued_jobs",
         "Jobs one org may have waiting to start (0: no limit); one more is 429."),
        ("quota_running_jobs",
         "Jobs of one org that run at once (0: only ARKOR_MAX_CONCURRENT_JOBS bounds them); "
         "the others wait in the queue."),
        ("quota_job_steps",
         "Most optimizer steps one job may run: its maxSteps, or its epochs of the dataset at "
         "its batch size (0: no limit); a job over it is 403."),
        ("quota_job_epochs", "Largest numTrainEpochs a job may ask for (0: no limit)."),
        ("quota_job_batch_size", "Largest batchSize a job may ask for (0: no limit)."),
        ("quota_job_wall_s",
         "Seconds a job may run; past it the runner is stopped and the job fails with that "
         "reason (0: no limit)."),
    )),
)


def default_data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where ``ARKOR_DATA_DIR`` is not given: ``$ARKOR_HOME/cloud``, else ``~/.arkor/cloud``."""
    home = environ.get("ARKOR_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".arkor") / "cloud"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None = None
    base_models: tuple[BaseModelSpec, ...] = ()
    public_models: tuple[str, ...] = ()
    upstreams: tuple[tuple[str, str], ...] = ()
    upstream_api_key: str | None = field(default=None, repr=False)
    min_client_version: str = DEFAULT_MIN_CLIENT_VERSION
    max_concurrent_jobs: int = DEFAULT_MAX_CONCURRENT_JOBS
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB
    edge_domain: str = DEFAULT_EDGE_DOMAIN
    public_edge_url: str | None = None
    engine_max_batch: int = DEFAULT_ENGINE_MAX_BATCH
    engine_max_queue: int = DEFAULT_ENGINE_MAX_QUEUE
    engine_max_adapters: int = DEFAULT_ENGINE_MAX_ADAPTERS
    engine_prefix_cache_mb: int = DEFAULT_ENGINE_PREFIX_CACHE_MB
    engine_precision: str = DEFAULT_PRECISION
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
    metrics_port: int = 0
    metrics_host: str = DEFAULT_METRICS_HOST
    metrics_token: str | None = field(default=None, repr=False)
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    max_tokens_cap: int = DEFAULT_MAX_TOKENS_CAP
    max_n: int = DEFAULT_MAX_N
    dataset_roots: tuple[Path, ...] = ()
    slug_grace_days: int = DEFAULT_SLUG_GRACE_DAYS
    # None: by the bind address (see arkor.cloud.signup.for_bind_address); an app built
    # without one (tests, `arkor dev`) is on loopback and allows anonymous sign-up.
    signup: str | None = None
    signup_per_hour: int = DEFAULT_SIGNUP_PER_HOUR
    anonymous_deployment_days: int = 0
    redis_url: str | None = None
    rate_limit_failure: str = RATE_LIMIT_FAILURES[0]
    rate_limit_window_s: int = DEFAULT_RATE_LIMIT_WINDOW_S
    dns_nameservers: tuple[str, ...] = ()
    dns_timeout_s: int = DEFAULT_DNS_TIMEOUT_S
    domain_check_interval_s: int = DEFAULT_DOMAIN_CHECK_INTERVAL_S
    quota_deployments: int = DEFAULT_QUOTAS["quota_deployments"]
    quota_keys_per_deployment: int = DEFAULT_QUOTAS["quota_keys_per_deployment"]
    quota_datasets: int = DEFAULT_QUOTAS["quota_datasets"]
    quota_dataset_mb: int = DEFAULT_QUOTAS["quota_dataset_mb"]
    quota_queued_jobs: int = DEFAULT_QUOTAS["quota_queued_jobs"]
    quota_running_jobs: int = DEFAULT_QUOTAS["quota_running_jobs"]
    quota_job_steps: int = DEFAULT_QUOTAS["quota_job_steps"]
    quota_job_epochs: int = DEFAULT_QUOTAS["quota_job_epochs"]
    quota_job_batch_size: int = DEFAULT_QUOTAS["quota_job_batch_size"]
    quota_job_wall_s: int = DEFAULT_QUOTAS["quota_job_wall_s"]
    registry: BaseModelRegistry = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_concurrent_jobs < 1:
            raise ValueError("max_concurrent_jobs must be at least 1")
        if not 1 <= self.default_max_tokens <= self.max_tokens_cap:
            raise ValueError("default_max_tokens must be at least 1 and at most max_tokens_cap")
        if self.max_n < 1:
            raise ValueError("max_n must be at least 1")
        if self.max_upload_mb < 1:
            raise ValueError("max_upload_mb must be at least 1")
        if self.slug_grace_days < 0:
            raise ValueError("slug_grace_days must be 0 or more")
        if self.signup is not None:
            object.__setattr__(self, "signup", self.signup.strip().lower())
            if self.signup not in SIGNUP_POLICIES:
                raise ValueError(f"signup must be one of {', '.join(SIGNUP_POLICIES)}, "
                                 f"not {self.signup!r}")
        if self.signup_per_hour < 1:
            raise ValueError("signup_per_hour must be at least 1")
        if self.anonymous_deployment_days < 0:
            raise ValueError("anonymous_deployment_days must be 0 (no expiry) or more")
        object.__setattr__(self, "rate_limit_failure", self.rate_limit_failure.strip().lower())
        if self.rate_limit_failure not in RATE_LIMIT_FAILURES:
            raise ValueError(f"rate_limit_failure must be one of {', '.join(RATE_LIMIT_FAILURES)}, "
                             f"not {self.rate_limit_failure!r}")
        if self.rate_limit_window_s < 1:
            raise ValueError("rate_limit_window_s must be at least 1")
        if self.dns_timeout_s < 1:
            raise ValueError("dns_timeout_s must be at least 1")
        if self.domain_check_interval_s < 0:
            raise ValueError("domain_check_interval_s must be 0 (only on demand) or more")
        for name in DEFAULT_QUOTAS:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (no limit) or more")
        if self.public_edge_url is not None and "{slug}" not in self.public_edge_url:
            raise ValueError("public_edge_url must contain {slug}, e.g. https://{slug}.example.com")
        for name in ("max_body_kb", "body_timeout_s", "header_timeout_s", "keep_alive_s",
                     "max_connections", "shutdown_timeout_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        object.__setattr__(self, "log_format", self.log_format.lower())
        object.__setattr__(self, "log_level", self.log_level.upper())
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError("metrics_port must be a port number (1-65535), or 0 for none")
        if self.metrics_token is not None:
            object.__setattr__(self, "metrics_token", self.metrics_token.strip() or None)
        if self.metrics_token is not None and len(self.metrics_token) < MIN_METRICS_TOKEN_CHARS:
            raise ValueError(f"ARKOR_METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_CHARS} "
                             "characters, e.g. the output of `openssl rand -hex 32`")
        plan = parse_precision_plan(self.engine_precision)
        object.__setattr__(self, "engine_precision", str(plan))
        object.__setattr__(self, "allowed_hosts", parse_hosts(self.allowed_hosts))
        object.__setattr__(self, "registry", BaseModelRegistry.with_embedded(
            self.base_models, public=self.public_models, upstreams=self.upstreams,
            upstream_api_key=self.upstream_api_key))
        for name, _ in plan.per_model:
            if self.registry.get(name) is None:
                raise ValueError(
                    f"engine precision names base model {name!r}, which is not registered "
                    f"(registered: {', '.join(self.registry.names)})"
                )

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'arkor.sqlite3'}"

    @property
    def serves_metrics(self) -> bool:
        """Whether GET /metrics is served anywhere (the operator's port, or behind the token)."""
        return bool(self.metrics_port or self.metrics_token)

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> Settings:
        """Each setting from its env var (empty is unset), then the ``overrides`` given (not
        None or empty)."""
        values = [(s.name, s.parse(environ[s.env])) for s in SETTINGS if environ.get(s.env)]
        given = {k: v for k, v in (*values, *overrides.items()) if v is not None and v != ()}
        return cls(**{"data_dir": default_data_dir(environ), **given})


def edge_base_url(settings: Settings, request_base_url: str, slug: str) -> str:
    """The base URL to give an OpenAI SDK for ``slug`` (ends in ``/v1``)."""
    if settings.public_edge_url:
        return settings.public_edge_url.format(slug=slug).rstrip("/") + "/v1"
    return f"{request_base_url.rstrip('/')}/d/{slug}/v1"
