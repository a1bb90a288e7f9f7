"""Custom domains at the edge: which verified domain names which deployment, and the ASGI
middleware that sends ``Host: <custom domain>`` to that deployment.

The map of verified domains (domain → slug) is read whole, once, and kept in memory: a
request then costs a dict lookup, whatever Host it sends, and a name nobody added costs no
database read. Any committed change to a deployment, a key, a job or a custom domain empties
it (:mod:`arkor.store.changes`), so a verified domain is served, and a removed or unverified
one refused, from the next request on; the read after that runs off the event loop. A
generation counter stops a read that raced with a change from keeping what it read before.
"""

from __future__ import annotations

import ipaddress
import threading

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from arkor.edge.routing import HOST_SLUG
from arkor.store.db import Database
from arkor.store.domains import verified_hosts


class DomainDirectory:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._hosts: dict[str, str] | None = None
        self._generation = 0
        self._lock = threading.Lock()
        db.changes.subscribe(self.invalidate)

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._hosts = None

    def load(self) -> dict[str, str]:
        """Read the verified domains (blocking) and keep them, unless a change came since."""
        with self._lock:
            generation = self._generation
        with self._db.session() as session:
            hosts = verified_hosts(session)
        with self._lock:
            if generation == self._generation:
                self._hosts = hosts
        return hosts

    async def slug_for(self, name: str) -> str | None:
        """The deployment a verified custom domain ``name`` (lower case, no port) names."""
        hosts = self._hosts
        if hosts is None:
            hosts = await anyio.to_thread.run_sync(self.load)
        return hosts.get(name)


def host_name(scope: Scope) -> str:
    """The request's Host without its port or trailing dot, lower case ("" for none)."""
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
    name = host.strip().lower()
    if name.startswith("["):
        return name  # an IPv6 literal: never a custom domain
    return name.rpartition(":")[0].rstrip(".") if ":" in name else name.rstrip(".")


class CustomDomainHosts:
    """ASGI middleware outside the guards: a request for a verified custom domain is marked
    with its deployment's slug (:data:`arkor.edge.routing.HOST_SLUG`), so the Host check lets
    it in, the access log and the body limits treat it as the edge's, and the router sends it
    to the edge. Names that are the server's own (IP addresses, ``localhost``, the edge
    domain and its subdomains) are not looked up."""

    def __init__(self, app: ASGIApp, *, domains: DomainDirectory, edge_domain: str) -> None:
        self.app = app
        self.domains = domains
        self.edge = edge_domain.lower().strip(".")

    def _own(self, name: str) -> bool:
        if not name or name.startswith("[") or name in ("localhost", self.edge):
            return True
        if name.endswith((".localhost", "." + self.edge)):
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            name = host_name(scope)
            if not self._own(name):
                slug = await self.domains.slug_for(name)
                if slug is not None:
                    scope[HOST_SLUG] = slug
        await self.app(scope, receive, send)
