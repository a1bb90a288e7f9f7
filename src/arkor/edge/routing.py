"""Which requests are the edge's: ``<slug>.<edge domain>`` hosts, verified custom domains
(marked by :mod:`arkor.edge.domains`), and ``/d/<slug>/...`` paths.

Everything else goes to the control plane. The path form exists for clients that cannot
resolve wildcard subdomains (``*.localhost`` does not resolve for Python or Node here).
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from arkor.edge.app import SLUG_SCOPE_KEY

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$")
PATH_PREFIX = "/d/"
_REQUEST_SLUG = "arkor.request_slug"
HOST_SLUG = "arkor.host_slug"  # a verified custom domain's deployment (arkor.edge.domains)


def slug_from_host(host: str, edge_domain: str) -> str | None:
    name = host.strip().lower()
    if name.startswith("["):
        return None
    name = name.rsplit(":", 1)[0] if ":" in name else name
    suffix = "." + edge_domain.lower().strip(".")
    if not name.endswith(suffix):
        return None
    label = name[: -len(suffix)]
    return label if _LABEL.match(label) else None


def split_path(path: str) -> tuple[str, str] | None:
    """``/d/<slug>/v1/...`` → ``(slug, "/v1/...")``."""
    if not path.startswith(PATH_PREFIX):
        return None
    slug, sep, rest = path[len(PATH_PREFIX):].partition("/")
    if not slug:
        return None
    return slug.lower(), "/" + rest if sep else "/"


def request_slug(scope: Scope, edge_domain: str) -> str | None:
    """The deployment an HTTP request is for (by Host, then by path); None: the control plane.

    Worked out once per request and kept in the scope, which the guards and the access log
    around the app share.
    """
    if _REQUEST_SLUG not in scope:
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        split = split_path(scope["path"])
        scope[_REQUEST_SLUG] = (scope.get(HOST_SLUG) or slug_from_host(host, edge_domain)
                                or (split[0] if split else None))
    slug: str | None = scope[_REQUEST_SLUG]
    return slug


class EdgeRouter:
    """ASGI middleware in front of the control plane: edge requests never reach its router."""

    def __init__(self, control_plane: ASGIApp, edge: ASGIApp, *, edge_domain: str) -> None:
        self.control_plane = control_plane
        self.edge = edge
        self.edge_domain = edge_domain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
            slug = scope.get(HOST_SLUG) or slug_from_host(host, self.edge_domain)
            if slug is not None:
                await self.edge({**scope, SLUG_SCOPE_KEY: slug}, receive, send)
                return
            split = split_path(scope["path"])
            if split is not None:
                slug, rest = split
                await self.edge({**scope, SLUG_SCOPE_KEY: slug, "path": rest,
                                 "raw_path": rest.encode()}, receive, send)
                return
        await self.control_plane(scope, receive, send)
