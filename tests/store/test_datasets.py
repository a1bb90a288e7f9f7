"""Uploaded datasets: found and listed only within their project, in upload order."""

from __future__ import annotations

import uuid

from arkor.store import datasets
from arkor.store.db import Database
from arkor.store.tables import Dataset
from tests.store.conftest import Tenant, new_tenant


def add(db: Database, tenant: Tenant, name: str) -> Dataset:
    with db.session() as session:
        return datasets.add_dataset(session, Dataset(
            id=str(uuid.uuid4()), org_id=tenant.org_id, project_id=tenant.project_id, name=name,
            path=f"/data/{name}", num_examples=3, size_bytes=120))


def test_datasets_are_scoped_by_project_in_upload_order(db: Database, tenant: Tenant) -> None:
    first, second = add(db, tenant, "a.jsonl"), add(db, tenant, "b.jsonl")
    stranger = new_tenant(db)
    with db.session() as session:
        assert [d.id for d in datasets.list_datasets(session, tenant.project_id)] == [
            first.id, second.id]
        assert datasets.get_dataset(session, tenant.project_id, first.id).name == "a.jsonl"
        assert datasets.get_dataset(session, stranger.project_id, first.id) is None
        assert datasets.list_datasets(session, stranger.project_id) == []
