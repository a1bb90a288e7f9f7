"""A migrated database per test module and backend, and a fresh tenant (user, org, project)
per test, so tests share the database without seeing each other's rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from arkor.store import identities, projects
from arkor.store.db import Database, migrate
from tests.servers import database_url


@dataclass(frozen=True)
class Tenant:
    user_id: str
    org_id: str
    project_id: str
    token: str


@pytest.fixture(scope="module")
def db(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    with database_url(backend, tmp_path_factory.mktemp(f"store-{backend}")) as url:
        database = Database(url)
        migrate(database.engine)
        try:
            yield database
        finally:
            database.dispose()


def new_tenant(db: Database) -> Tenant:
    with db.session() as session:
        identity = identities.create_anonymous_identity(session, kind="cli")
        project = projects.create_project(session, org_id=identity.org.id,
                                          slug=f"p-{uuid.uuid4().hex[:8]}", name="Project")
        return Tenant(user_id=identity.user.id, org_id=identity.org.id,
                      project_id=project.id, token=identity.token)


@pytest.fixture
def tenant(db: Database) -> Tenant:
    return new_tenant(db)
