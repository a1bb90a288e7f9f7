"""The reverse proxy's on-demand TLS question over real HTTP: 200 for a serving deployment's
``<slug>.<edge domain>``, 404 for anything else (unknown, disabled or expired deployments,
other names), no client header needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from arkor.store.tables import Deployment
from tests.workspace import new_workspace

TARGET = {"kind": "base_model", "baseModel": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def ask(cloud, domain: str) -> httpx.Response:
    return httpx.get(cloud.url + "/internal/tls/allowed", params={"domain": domain})


def test_only_serving_deployments_get_certificates(cloud) -> None:
    ws = new_workspace(cloud.url)
    edge = cloud.settings.edge_domain
    live = ws.client.create_deployment(ws.scope, slug=f"tls-{ws.org_id[:8]}", target=TARGET)
    assert ask(cloud, f"{live.slug}.{edge}").status_code == 200
    assert ask(cloud, f"{live.slug.upper()}.{edge}.").json()["allowed"] is True
    for name in (f"nobody-{ws.org_id[:8]}.{edge}", f"{live.slug}.evil.example", edge,
                 "example.com", f"a.{live.slug}.{edge}"):
        refused = ask(cloud, name)
        assert refused.status_code == 404 and "No certificate" in refused.json()["error"]

    ws.client.update_deployment(live.id, ws.scope, enabled=False)
    assert ask(cloud, f"{live.slug}.{edge}").status_code == 404
    ws.client.update_deployment(live.id, ws.scope, enabled=True)
    with cloud.app.state.db.session() as session:
        session.get(Deployment, live.id).expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert ask(cloud, f"{live.slug}.{edge}").status_code == 404
    assert httpx.get(cloud.url + "/internal/tls/allowed").status_code == 400
