"""The deployment rules every layer shares: slugs, auth modes, targets, run retention, key labels.

The server's request models, the Studio's early checks, the SDK's models and the CLI read their
names and messages here, so a rule and its message are spelled once.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

AuthMode = Literal["none", "fixed_api_key"]
AUTH_MODES: Final[tuple[AuthMode, ...]] = get_args(AuthMode)
AUTH_NONE: Final = "none"
AUTH_FIXED_KEY: Final = "fixed_api_key"
DEFAULT_AUTH_MODE: Final[AuthMode] = AUTH_FIXED_KEY

# Target kinds: a deployment serves an adapter (a job's final one or a checkpoint), a base
# model, or the operator's model menu (every public base model; the request's `model` picks).
# Readers keep an open enum: a kind this version does not know is shown, never a failure.
TargetKind = Literal["adapter", "base_model", "model_menu"]
AdapterKind = Literal["final", "checkpoint"]
TARGET_ADAPTER: Final = "adapter"
TARGET_BASE_MODEL: Final = "base_model"
TARGET_MODEL_MENU: Final = "model_menu"
MODEL_MENU_LABEL: Final = "All public models (per-request `model`)"
ADAPTER_FINAL: Final = "final"
ADAPTER_CHECKPOINT: Final = "checkpoint"

RunRetentionMode = Literal["unlimited", "disabled", "days"]
RETENTION_MODES: Final[tuple[RunRetentionMode, ...]] = get_args(RunRetentionMode)
RETENTION_DAYS: Final = "days"
DEFAULT_RETENTION: Final[tuple[RunRetentionMode, int]] = ("days", 7)
MAX_RETENTION_DAYS: Final = 3650
DAYS_ONLY_WITH_DAYS_MODE: Final = (
    'runRetentionDays is only valid when runRetentionMode is "days".'
)
DAYS_MODE_NEEDS_DAYS: Final = (
    'runRetentionMode "days" requires a positive integer runRetentionDays.'
)

KEY_LABEL_MAX: Final = 80
KEY_LABEL_MESSAGE: Final = f"label must be 1-{KEY_LABEL_MAX} characters (after trimming spaces)"

# Rate limits of a deployment or a key (null: unlimited); the edge enforces them per window
# (a minute unless the server's ARKOR_RATE_LIMIT_WINDOW_S says otherwise).
MAX_REQUESTS_PER_MINUTE: Final = 1_000_000
MAX_TOKENS_PER_MINUTE: Final = 1_000_000_000
MAX_CONCURRENT_REQUESTS: Final = 10_000

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
SLUG_MIN, SLUG_MAX = 2, 50

# Labels that would collide with the platform's own hostnames under the edge domain.
RESERVED_SLUGS = frozenset(
    {
        "admin", "api", "app", "assets", "auth", "billing", "blog", "cdn", "console",
        "dashboard", "dev", "docs", "edge", "ftp", "help", "internal", "localhost", "login",
        "mail", "ns1", "ns2", "smtp", "static", "status", "studio", "support", "www",
    }
)

SLUG_FORMAT_MESSAGE = (
    "slug must be 2-50 chars, lowercase letters / digits / hyphens, "
    'starting and ending with a letter or digit (e.g. "my-model")'
)

PROJECT_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
PROJECT_SLUG_MESSAGE = (
    "slug must be 1-64 chars, lowercase letters / digits / hyphens, "
    "starting and ending with a letter or digit"
)


def is_deployment_slug(slug: str) -> bool:
    """Whether ``slug`` has the shape of a deployment slug (reserved names included)."""
    return SLUG_MIN <= len(slug) <= SLUG_MAX and SLUG_RE.match(slug) is not None


def check_deployment_slug(slug: str) -> str:
    if not is_deployment_slug(slug):
        raise ValueError(SLUG_FORMAT_MESSAGE)
    if slug in RESERVED_SLUGS:
        raise ValueError(
            f"slug {slug!r} is reserved for the platform; pick another "
            f"(reserved: {', '.join(sorted(RESERVED_SLUGS))})"
        )
    return slug


def check_project_slug(slug: str) -> str:
    if not PROJECT_SLUG_RE.match(slug):
        raise ValueError(PROJECT_SLUG_MESSAGE)
    return slug
