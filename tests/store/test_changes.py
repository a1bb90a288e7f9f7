"""The change feed: a committed change to a deployment, a key or a job tells every subscriber
once, after the commit; a rollback, another table and the bulk ``lastUsedAt`` update tell
nobody. On PostgreSQL another ``Database`` on the same data hears it through NOTIFY."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from arkor.store import deployment_keys, deployments, jobs, projects
from arkor.store.db import Database, migrate
from arkor.store.deployments import TargetColumns
from arkor.store.tables import utcnow
from tests.servers import postgres_schema_url
from tests.store.conftest import Tenant, new_tenant

BASE = TargetColumns(target_kind="base_model", base_model="acme/base")


class Heard:
    """A subscriber that counts the times it is told."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        db.changes.subscribe(self)

    def __call__(self) -> None:
        self.count += 1

    def after(self, action: Callable[[], object]) -> int:
        before = self.count
        action()
        return self.count - before


def new_deployment(db: Database, tenant: Tenant, slug: str) -> str:
    with db.session() as session:
        return deployments.create_deployment(
            session, org_id=tenant.org_id, project_id=tenant.project_id, slug=slug, target=BASE,
            auth_mode="none", run_retention_mode="days", run_retention_days=30).id


def test_watched_changes_are_told_once_per_commit(db: Database, tenant: Tenant) -> None:
    heard = Heard(db)
    assert heard.after(lambda: new_deployment(db, tenant, "told-bot")) == 1

    def key_and_job() -> None:
        with db.session() as session:
            row = deployments.deployment_by_slug(session, "told-bot")
            deployment_keys.create_key(session, deployment_id=row.id, label="a")
            deployment_keys.create_key(session, deployment_id=row.id, label="b")
            jobs.create_job(session, org_id=tenant.org_id, project_id=tenant.project_id,
                            name="run", config={})

    assert heard.after(key_and_job) == 1


def test_a_subscriber_is_told_only_after_the_commit(db: Database, tenant: Tenant) -> None:
    """Not when a savepoint inside the unit of work is released (a create's slug check): a
    cache emptied then could be refilled from the database before the commit."""
    seen_in_db: list[bool] = []

    def look() -> None:
        with db.session() as other:
            seen_in_db.append(deployments.deployment_by_slug(other, "late-bot") is not None)

    db.changes.subscribe(look)
    new_deployment(db, tenant, "late-bot")
    assert seen_in_db and all(seen_in_db)


def test_rollbacks_other_tables_and_last_used_tell_nobody(db: Database, tenant: Tenant) -> None:
    heard = Heard(db)
    key_id = ""

    def rolled_back() -> None:
        with pytest.raises(RuntimeError), db.session() as session:
            deployments.create_deployment(
                session, org_id=tenant.org_id, project_id=tenant.project_id, slug="gone-bot",
                target=BASE, auth_mode="none", run_retention_mode="days",
                run_retention_days=30)
            raise RuntimeError("the request failed after the insert")

    def other_table() -> None:
        with db.session() as session:
            projects.create_project(session, org_id=tenant.org_id, slug="quiet", name="Quiet")

    def last_used() -> None:
        with db.session() as session:
            deployment_keys.record_last_used(session, {key_id: utcnow()})

    assert heard.after(rolled_back) == 0
    assert heard.after(other_table) == 0
    deployment_id = new_deployment(db, tenant, "used-bot")
    with db.session() as session:
        key_id = deployment_keys.create_key(session, deployment_id=deployment_id,
                                            label="k")[0].id
    assert heard.after(last_used) == 0


def test_a_failing_subscriber_does_not_stop_the_others(db: Database, tenant: Tenant) -> None:
    def fail() -> None:
        raise RuntimeError("a broken cache")

    db.changes.subscribe(fail)
    heard = Heard(db)
    assert heard.after(lambda: new_deployment(db, tenant, "robust-bot")) == 1


@contextmanager
def another_server(db: Database) -> Iterator[Heard]:
    """Another server of ``db``'s installation (a ``Database`` on its URL), listening."""
    other = Database(str(db.engine.url.render_as_string(hide_password=False)))
    try:
        other.listen_for_changes()
        yield Heard(other)
    finally:
        other.dispose()


def wait_until_heard(heard: Heard, what: str) -> None:
    deadline = time.monotonic() + 5
    while heard.count == 0:
        assert time.monotonic() < deadline, f"the other server never heard {what}"
        time.sleep(0.02)


def test_another_database_on_postgresql_hears_the_commit(
        backend: str, db: Database, tenant: Tenant) -> None:
    if backend != "postgres":
        pytest.skip("one process per SQLite file: nothing to tell across processes")
    with another_server(db) as heard:
        new_deployment(db, tenant, "far-bot")
        wait_until_heard(heard, "the commit")


def test_an_installation_in_another_schema_is_not_heard(
        backend: str, db: Database, tenant: Tenant) -> None:
    """Notification channels are per database, not per schema: two installations that share a
    PostgreSQL database in schemas of their own must not empty each other's caches."""
    if backend != "postgres":
        pytest.skip("one process per SQLite file: nothing to tell across processes")
    with another_server(db) as heard:
        with postgres_schema_url() as url:
            neighbour = Database(url)
            try:
                migrate(neighbour.engine)
                new_deployment(neighbour, new_tenant(neighbour), "neighbour-bot")
            finally:
                neighbour.dispose()
        # Notifications arrive in commit order: once this installation's own change is heard,
        # the neighbour's, committed before it, has been read (and must have been ignored).
        new_deployment(db, tenant, "own-bot")
        wait_until_heard(heard, "its own schema's commit")
        time.sleep(0.2)
        assert heard.count == 1
