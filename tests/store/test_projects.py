"""Projects: a slug unique within its org (a duplicate is ``SlugTaken`` and leaves the unit of
work usable), free to reuse in another org, and every lookup scoped by org."""

from __future__ import annotations

import pytest

from arkor.store import projects
from arkor.store.db import Database
from arkor.store.errors import SlugTaken
from tests.store.conftest import Tenant, new_tenant


def test_a_duplicate_slug_in_the_org_is_slug_taken_and_the_session_goes_on(
        db: Database, tenant: Tenant) -> None:
    with db.session() as session:
        projects.create_project(session, org_id=tenant.org_id, slug="shop", name="Shop")
        with pytest.raises(SlugTaken) as raised:
            projects.create_project(session, org_id=tenant.org_id, slug="shop", name="Again")
        assert (raised.value.what, raised.value.slug) == ("Project", "shop")
        projects.create_project(session, org_id=tenant.org_id, slug="shop-2", name="Shop 2")
    with db.session() as session:
        slugs = [p.slug for p in projects.list_projects(session, tenant.org_id)]
    assert slugs[-2:] == ["shop", "shop-2"] and slugs.count("shop") == 1


def test_the_same_slug_in_another_org_is_another_project(db: Database, tenant: Tenant) -> None:
    other = new_tenant(db)
    with db.session() as session:
        mine = projects.create_project(session, org_id=tenant.org_id, slug="bot", name="Mine")
        theirs = projects.create_project(session, org_id=other.org_id, slug="bot", name="Theirs")
    with db.session() as session:
        assert projects.project_by_slug(session, tenant.org_id, "bot").id == mine.id
        assert projects.project_by_slug(session, other.org_id, "bot").id == theirs.id
        assert projects.project_by_slug(session, tenant.org_id, "nope") is None
        assert mine.id not in {p.id for p in projects.list_projects(session, other.org_id)}
