"""Custom domains in the store: one owner per name, a check's outcome (found verifies, not
found unverifies, a failed lookup changes nothing), the deployment's primary domain kept in
step, the due list, the verified host map, and the cascade when the deployment goes."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from arkor.store import deployments, domains
from arkor.store.db import Database
from arkor.store.deployments import TargetColumns
from arkor.store.errors import DomainTaken
from arkor.store.tables import CustomDomain, Deployment, utcnow
from tests.store.conftest import Tenant


def new_deployment(db: Database, tenant: Tenant) -> str:
    with db.session() as session:
        return deployments.create_deployment(
            session, org_id=tenant.org_id, project_id=tenant.project_id,
            slug=f"dom-{uuid.uuid4().hex[:8]}",
            target=TargetColumns(target_kind="base_model", base_model="acme/base"),
            auth_mode="fixed_api_key", run_retention_mode="days", run_retention_days=30).id


def name() -> str:
    return f"api.{uuid.uuid4().hex[:10]}.example.com"


def add(db: Database, deployment_id: str, domain: str) -> CustomDomain:
    with db.session() as session:
        return domains.add_domain(session, session.get(Deployment, deployment_id), domain)


def check(db: Database, domain: str, found: bool | None, error: str | None = None) -> None:
    with db.session() as session:
        domains.record_check(session, session.get(CustomDomain, domain), found=found,
                             error=error)


def primary(db: Database, deployment_id: str) -> str | None:
    with db.session() as session:
        return session.get(Deployment, deployment_id).custom_domain


def test_a_name_has_one_owner_and_goes_with_its_deployment(db: Database, tenant: Tenant) -> None:
    first, second = new_deployment(db, tenant), new_deployment(db, tenant)
    domain = name()
    added = add(db, first, domain)
    assert added.token.startswith("arkor-") and added.verified_at is None
    with pytest.raises(DomainTaken):
        add(db, second, domain)
    with db.session() as session:
        assert domains.get_domain(session, second, domain) is None
        deployments.delete_deployment(session, session.get(Deployment, first))
    assert add(db, second, domain).deployment_id == second


def test_checks_verify_unverify_and_keep_the_primary_in_step(db: Database,
                                                             tenant: Tenant) -> None:
    deployment_id = new_deployment(db, tenant)
    early, late = name(), name()
    add(db, deployment_id, early)
    add(db, deployment_id, late)
    assert primary(db, deployment_id) is None

    check(db, early, True)
    check(db, late, True)
    assert primary(db, deployment_id) == early
    check(db, early, None, "timed out")  # a failed lookup changes nothing but the error
    with db.session() as session:
        row = session.get(CustomDomain, early)
        assert row.verified_at is not None and row.last_error == "timed out"
        assert domains.verified_hosts(session)[early] == session.get(
            Deployment, deployment_id).slug
    check(db, early, False, "gone")
    assert primary(db, deployment_id) == late
    with db.session() as session:
        assert early not in domains.verified_hosts(session)
        assert domains.verified_deployment(session, late).id == deployment_id
        domains.remove_domain(session, session.get(CustomDomain, late))
    assert primary(db, deployment_id) is None


def test_domains_are_due_once_an_interval(db: Database, tenant: Tenant) -> None:
    deployment_id = new_deployment(db, tenant)
    domain = name()
    added = add(db, deployment_id, domain)
    with db.session() as session:
        assert (domain, added.token) in domains.due_for_check(session, utcnow(), limit=10_000)
    check(db, domain, False)
    with db.session() as session:
        due = {d for d, _ in domains.due_for_check(session, utcnow() - timedelta(hours=1),
                                                    limit=10_000)}
        assert domain not in due
        due = {d for d, _ in domains.due_for_check(session, utcnow() + timedelta(seconds=1),
                                                    limit=10_000)}
        assert domain in due
