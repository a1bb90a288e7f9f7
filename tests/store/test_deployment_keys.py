"""Deployment keys: minted with a checksum, stored as a digest and a display prefix (never
the plaintext), listed per deployment, revoked without losing the row, and ``lastUsedAt``
written in batches."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from arkor.store import deployment_keys, deployments
from arkor.store.db import Database
from arkor.store.deployment_keys import DISPLAY_PREFIX_CHARS, KEY_PREFIX, is_well_formed
from arkor.store.deployments import TargetColumns
from arkor.store.tables import DeploymentKey, utcnow
from tests.store.conftest import Tenant


@pytest.fixture
def deployment_id(db: Database, tenant: Tenant) -> str:
    with db.session() as session:
        return deployments.create_deployment(
            session, org_id=tenant.org_id, project_id=tenant.project_id,
            slug=f"keys-{tenant.project_id[:8]}",
            target=TargetColumns(target_kind="base_model", base_model="acme/base"),
            auth_mode="fixed_api_key", run_retention_mode="days", run_retention_days=30).id


def mint(db: Database, deployment_id: str, label: str = "ci") -> tuple[DeploymentKey, str]:
    with db.session() as session:
        return deployment_keys.create_key(session, deployment_id=deployment_id, label=label)


def test_only_the_digest_and_the_display_prefix_are_stored(
        db: Database, deployment_id: str) -> None:
    key, plaintext = mint(db, deployment_id)
    assert plaintext.startswith(KEY_PREFIX) and is_well_formed(plaintext)
    with db.session() as session:
        row = session.get(DeploymentKey, key.id)
        stored = {column.key: getattr(row, column.key) for column in DeploymentKey.__table__.c}
    assert stored["digest"] == hashlib.sha256(plaintext.encode()).hexdigest()
    assert stored["prefix"] == plaintext[:DISPLAY_PREFIX_CHARS]
    assert plaintext not in {str(value) for value in stored.values()}


def test_a_key_with_a_wrong_character_fails_its_checksum(db: Database, deployment_id: str) -> None:
    _key, plaintext = mint(db, deployment_id)
    last = plaintext[-1]
    for broken in (plaintext[:-1] + ("A" if last != "A" else "B"),
                   plaintext[:12] + ("x" if plaintext[12] != "x" else "y") + plaintext[13:],
                   plaintext[:-1], plaintext + "A", "sk_live_" + plaintext[8:],
                   plaintext[:-1] + "!"):
        assert not is_well_formed(broken), broken


def test_keys_are_listed_and_found_only_on_their_deployment(
        db: Database, tenant: Tenant, deployment_id: str) -> None:
    first, _ = mint(db, deployment_id, "first")
    second, _ = mint(db, deployment_id, "second")
    with db.session() as session:
        other = deployments.create_deployment(
            session, org_id=tenant.org_id, project_id=tenant.project_id,
            slug=f"other-{tenant.project_id[:8]}", target=TargetColumns(target_kind="base_model",
                                                                      base_model="acme/base"),
            auth_mode="none", run_retention_mode="days", run_retention_days=30)
        listed = deployment_keys.list_keys(session, deployment_id)
        assert {k.id for k in listed} == {first.id, second.id}
        assert deployment_keys.get_key(session, deployment_id, first.id).label == "first"
        assert deployment_keys.get_key(session, other.id, first.id) is None
        assert deployment_keys.list_keys(session, other.id) == []


def test_revoking_keeps_the_row_and_the_first_revocation_time(
        db: Database, deployment_id: str) -> None:
    key, _ = mint(db, deployment_id)
    with db.session() as session:
        row = deployment_keys.get_key(session, deployment_id, key.id)
        deployment_keys.revoke_key(session, row)
        revoked_at = row.revoked_at
        deployment_keys.revoke_key(session, row)
    with db.session() as session:
        row = deployment_keys.get_key(session, deployment_id, key.id)
        assert not row.enabled and row.revoked_at == revoked_at is not None
        assert row.label == "ci" and row.prefix == key.prefix


def test_last_used_is_written_in_one_batch_and_unknown_ids_are_ignored(
        db: Database, deployment_id: str) -> None:
    (first, _), (second, _) = mint(db, deployment_id), mint(db, deployment_id)
    earlier, later = utcnow() - timedelta(minutes=5), utcnow()
    with db.session() as session:
        deployment_keys.record_last_used(session, {first.id: earlier, second.id: later,
                                                   "no-such-key": later})
    with db.session() as session:
        assert deployment_keys.get_key(session, deployment_id, first.id).last_used_at == earlier
        assert deployment_keys.get_key(session, deployment_id, second.id).last_used_at == later
