"""The seeds' SDK example end to end, over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from arkor import (
    AdapterTarget,
    BaseModelTarget,
    CheckpointAdapter,
    FinalAdapter,
    NotFoundError,
)
from tests.workspace import add_job, new_workspace


def test_deployment_lifecycle(cloud) -> None:
    ws = new_workspace(cloud.url)
    job_id = add_job(cloud, ws, checkpoint_steps=(10, 20))

    deployment = ws.client.create_deployment(
        ws.scope,
        slug=f"support-bot-{ws.scope.org_slug[-6:]}",
        target=AdapterTarget(adapter=FinalAdapter(job_id=job_id)),
        auth_mode="fixed_api_key",
    )
    assert deployment.target == AdapterTarget(adapter=FinalAdapter(job_id=job_id))
    assert deployment.auth_mode == "fixed_api_key"
    assert deployment.url_format == "openai_compat"
    assert deployment.enabled is True
    assert deployment.custom_domain is None
    assert (deployment.run_retention_mode, deployment.run_retention_days) == ("days", 7)
    assert deployment.created_at.endswith("Z") and deployment.updated_at.endswith("Z")

    key = ws.client.create_deployment_key(deployment.id, ws.scope, label="production")
    assert key.plaintext.startswith("ark_live_")
    assert key.prefix == key.plaintext[:17]
    assert key.plaintext not in repr(key)

    [listed] = ws.client.list_deployment_keys(deployment.id, ws.scope)
    assert listed.prefix == key.prefix and listed.enabled and listed.last_used_at is None
    assert "plaintext" not in listed.model_dump(by_alias=True)
    assert key.plaintext not in listed.model_dump_json()

    ws.client.revoke_deployment_key(deployment.id, key.id, ws.scope)
    [revoked] = ws.client.list_deployment_keys(deployment.id, ws.scope)
    assert revoked.id == key.id and revoked.enabled is False

    retargeted = ws.client.update_deployment(
        deployment.id,
        ws.scope,
        target=AdapterTarget(adapter=CheckpointAdapter(job_id=job_id, step=20)),
    )
    assert retargeted.target.adapter == CheckpointAdapter(job_id=job_id, step=20)
    assert retargeted.auth_mode == "fixed_api_key"  # untouched fields stay

    disabled = ws.client.update_deployment(deployment.id, ws.scope, enabled=False)
    assert disabled.enabled is False
    assert disabled.target == retargeted.target

    ws.client.delete_deployment(deployment.id, ws.scope)
    with pytest.raises(NotFoundError) as err:
        ws.client.get_deployment(deployment.id, ws.scope)
    assert err.value.status == 404
    with pytest.raises(NotFoundError):
        ws.client.list_deployment_keys(deployment.id, ws.scope)
    assert ws.client.list_deployments(ws.scope) == []


def test_list_get_and_base_model_target(cloud) -> None:
    ws = new_workspace(cloud.url)
    [embedded] = ws.client.list_base_models()
    assert embedded.name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    slug = f"base-{ws.scope.org_slug[-6:]}"
    created = ws.client.create_deployment(
        ws.scope,
        slug=slug,
        target=BaseModelTarget(base_model=embedded.name),
        auth_mode="none",
        run_retention_mode="unlimited",
    )
    assert created.run_retention_mode == "unlimited" and created.run_retention_days is None
    assert ws.client.get_deployment(created.id, ws.scope) == created
    assert [d.slug for d in ws.client.list_deployments(ws.scope)] == [slug]

    days = ws.client.update_deployment(
        created.id,
        ws.scope,
        run_retention_mode="days",
        run_retention_days=30,
        auth_mode="fixed_api_key",
    )
    assert (days.run_retention_mode, days.run_retention_days, days.auth_mode) == (
        "days", 30, "fixed_api_key"
    )
    only_days = ws.client.update_deployment(created.id, ws.scope, run_retention_days=3)
    assert (only_days.run_retention_mode, only_days.run_retention_days) == ("days", 3)


def test_dict_targets_and_scopes_are_accepted(cloud) -> None:
    ws = new_workspace(cloud.url)
    job_id = add_job(cloud, ws)
    created = ws.client.create_deployment(
        {"orgSlug": ws.scope.org_slug, "projectSlug": ws.scope.project_slug},
        slug=f"dict-{ws.scope.org_slug[-6:]}",
        target={"kind": "adapter", "adapter": {"kind": "final", "jobId": job_id}},
    )
    assert created.target.adapter.job_id == job_id
    assert created.auth_mode == "fixed_api_key"
