"""Slug rules for deployments (a subdomain label) and projects."""

from __future__ import annotations

import re

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
