"""Two servers on one PostgreSQL database: a change made through one applies on the other.

Each server caches deployments and key digests; PostgreSQL LISTEN/NOTIFY empties the other
server's cache when a change commits, so a revoked key or a disabled deployment stops
working everywhere within the notification's delivery time.
"""

from __future__ import annotations

import os
import time

import httpx
import pytest

from arkor.cloud.settings import Settings
from arkor.server import create_app
from tests.servers import POSTGRES_ENV, LiveServer, postgres_schema_url
from tests.workspace import new_workspace

EMBEDDED = "HuggingFaceTB/SmolLM2-135M-Instruct"
DELIVERY = 5.0


def settle(check, deadline: float = DELIVERY) -> None:
    """Repeat ``check`` until it holds; the bound is generous next to delivery in ms."""
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, "the other server never heard about the change"
        time.sleep(0.02)


@pytest.mark.postgres
def test_revoke_disable_and_delete_reach_the_other_server(tmp_path) -> None:
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} is not set")
    with postgres_schema_url() as url:
        first = create_app(Settings(data_dir=tmp_path / "a", database_url=url))
        second = create_app(Settings(data_dir=tmp_path / "b", database_url=url))
        with LiveServer(first) as url_a, LiveServer(second) as url_b:
            ws = new_workspace(url_a)
            dep = ws.client.create_deployment(
                ws.scope, slug="shared", target={"kind": "base_model", "baseModel": EMBEDDED})
            key = ws.client.create_deployment_key(dep.id, ws.scope, label="k")
            headers = {"Authorization": f"Bearer {key.plaintext}"}
            models_b = f"{url_b}/d/shared/v1/models"

            assert httpx.get(models_b, headers=headers).status_code == 200  # B caches it
            ws.client.revoke_deployment_key(dep.id, key.id, ws.scope)
            settle(lambda: httpx.get(models_b, headers=headers).status_code == 401)

            ws.client.update_deployment(dep.id, ws.scope, auth_mode="none")
            settle(lambda: httpx.get(models_b).status_code == 200)
            ws.client.update_deployment(dep.id, ws.scope, enabled=False)
            settle(lambda: httpx.get(models_b).status_code == 404)
            ws.client.update_deployment(dep.id, ws.scope, enabled=True)
            settle(lambda: httpx.get(models_b).status_code == 200)
            ws.client.delete_deployment(dep.id, ws.scope)
            settle(lambda: httpx.get(models_b).status_code == 404)
