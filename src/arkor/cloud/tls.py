"""The reverse proxy's TLS question: may it get a certificate for this name?

``GET /internal/tls/allowed?domain=NAME`` answers 200 only for ``<slug>.<edge domain>`` of a
deployment that serves (exists, enabled, not expired) and for a verified custom domain of
one, and 404 otherwise: the ``ask`` hook of Caddy's on-demand TLS, so a proxy issues
certificates for deployments and nothing else (a stranger pointing names at the server cannot
make it request certificates for them, and a custom domain gets one only after its TXT
challenge is verified).

Outside ``/v1`` and its client-version gate: the proxy sends no ``X-Arkor-Client``. It says no
more than the edge does (which slugs serve); keep ``/internal/`` off the public listener.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from arkor.cloud.deps import DatabaseDep, SettingsDep
from arkor.cloud.errors import error_responses
from arkor.contract.deployments import is_deployment_slug
from arkor.store import deployments, domains
from arkor.store.tables import utcnow

router = APIRouter(tags=["operator"])
TLS_ALLOWED = "/internal/tls/allowed"


@router.get(TLS_ALLOWED, responses=error_responses(400, 404),
            summary="Whether the reverse proxy may get a certificate for `domain` (200) or "
                    "not (404): Caddy's on-demand TLS ask hook")
def tls_allowed(db: DatabaseDep, settings: SettingsDep,
                domain: Annotated[str, Query(min_length=1, max_length=253)]) -> JSONResponse:
    name = domain.strip().lower().rstrip(".")
    slug, _, rest = name.partition(".")
    edge_name = rest == settings.edge_domain and is_deployment_slug(slug)
    with db.session() as session:
        row = (deployments.deployment_by_slug(session, slug) if edge_name
               else domains.verified_deployment(session, name))
        serves = row is not None and row.enabled and (
            row.expires_at is None or row.expires_at > utcnow())
    return JSONResponse({"allowed": True, "domain": name}) if serves else _no(name)


def _no(name: str) -> JSONResponse:
    return JSONResponse({"error": f"No certificate for {name[:253]!r}: it is not a serving "
                                  "deployment's name or verified custom domain here"},
                        status_code=404)
