"""Deployments: a slug unique across every org (``SlugTaken``), lookups by id scoped by project,
and a deleted deployment's slug held for its project (``SlugHeld`` for anyone else) until
the grace period ends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from arkor.store import deployments
from arkor.store.db import Database
from arkor.store.deployments import TargetColumns
from arkor.store.errors import SlugHeld, SlugTaken
from arkor.store.tables import Deployment, ReleasedSlug, utcnow
from tests.store.conftest import Tenant, new_tenant

BASE = TargetColumns(target_kind="base_model", base_model="acme/base")
GRACE = timedelta(days=7)


def create(db: Database, tenant: Tenant, slug: str, target: TargetColumns = BASE) -> Deployment:
    with db.session() as session:
        return deployments.create_deployment(
            session, org_id=tenant.org_id, project_id=tenant.project_id, slug=slug,
            target=target, auth_mode="fixed_api_key", run_retention_mode="days",
            run_retention_days=30, grace=GRACE)


def delete(db: Database, tenant: Tenant, deployment_id: str, grace: timedelta = GRACE) -> None:
    with db.session() as session:
        row = deployments.get_deployment(session, tenant.project_id, deployment_id)
        deployments.delete_deployment(session, row, grace=grace)


def deployments_of(db: Database, tenant: Tenant) -> list[Deployment]:
    with db.session() as session:
        return deployments.list_deployments(session, tenant.project_id)


def hold(db: Database, slug: str) -> str | None:
    with db.session() as session:
        row = session.get(ReleasedSlug, slug)
        return None if row is None else row.project_id


def test_a_slug_is_unique_across_orgs_and_the_loser_keeps_its_session(
        db: Database, tenant: Tenant) -> None:
    create(db, tenant, "unique-bot")
    other = new_tenant(db)
    with db.session() as session:
        with pytest.raises(SlugTaken) as raised:
            deployments.create_deployment(
                session, org_id=other.org_id, project_id=other.project_id, slug="unique-bot",
                target=BASE, auth_mode="none", run_retention_mode="days",
                run_retention_days=30)
        assert (raised.value.what, raised.value.slug) == ("Deployment", "unique-bot")
        assert deployments.list_deployments(session, other.project_id) == []
        assert deployments.deployment_by_slug(session, "unique-bot").project_id == (
            tenant.project_id)
    assert [d.slug for d in deployments_of(db, other)] == []


def test_lookups_by_id_are_scoped_by_project_and_by_slug_are_global(
        db: Database, tenant: Tenant) -> None:
    row, stranger = create(db, tenant, "scoped-bot"), new_tenant(db)
    with db.session() as session:
        assert deployments.get_deployment(session, tenant.project_id, row.id).slug == "scoped-bot"
        assert deployments.get_deployment(session, stranger.project_id, row.id) is None
        assert deployments.deployment_by_slug(session, "scoped-bot").id == row.id
    assert [d.id for d in deployments_of(db, stranger)] == []


def test_the_target_is_stored_in_its_columns_and_updates_replace_them(
        db: Database, tenant: Tenant) -> None:
    row = create(db, tenant, "target-bot")
    assert (row.target_kind, row.base_model, row.job_id) == ("base_model", "acme/base", None)
    with db.session() as session:
        live = deployments.get_deployment(session, tenant.project_id, row.id)
        deployments.update_deployment(session, live, {
            "target": TargetColumns(target_kind="base_model", base_model="acme/other"),
            "enabled": False})
    with db.session() as session:
        live = deployments.get_deployment(session, tenant.project_id, row.id)
        assert (live.base_model, live.enabled) == ("acme/other", False)
        assert live.updated_at > row.updated_at


def test_a_released_slug_is_held_for_its_project_and_refused_to_others(
        db: Database, tenant: Tenant) -> None:
    delete(db, tenant, create(db, tenant, "held-bot").id)
    assert hold(db, "held-bot") == tenant.project_id
    stranger = new_tenant(db)
    with pytest.raises(SlugHeld):
        create(db, stranger, "held-bot")
    with db.session() as session:  # the refused create was rolled back whole
        assert deployments.deployment_by_slug(session, "held-bot") is None
    assert hold(db, "held-bot") == tenant.project_id
    again = create(db, tenant, "held-bot")
    assert again.project_id == tenant.project_id and hold(db, "held-bot") is None


def test_an_expired_hold_is_ignored_and_cleared(db: Database, tenant: Tenant) -> None:
    delete(db, tenant, create(db, tenant, "stale-bot").id)
    with db.session() as session:
        session.execute(update(ReleasedSlug).where(ReleasedSlug.slug == "stale-bot")
                        .values(released_at=utcnow() - GRACE - timedelta(minutes=1)))
    stranger = new_tenant(db)
    assert create(db, stranger, "stale-bot").project_id == stranger.project_id
    assert hold(db, "stale-bot") is None


def test_deleting_without_grace_holds_nothing(db: Database, tenant: Tenant) -> None:
    delete(db, tenant, create(db, tenant, "free-bot").id, grace=timedelta(0))
    assert hold(db, "free-bot") is None
    with db.session() as session:
        assert session.execute(select(Deployment).where(Deployment.slug == "free-bot")
                               ).scalar_one_or_none() is None
    assert create(db, new_tenant(db), "free-bot").slug == "free-bot"
