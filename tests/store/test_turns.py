"""``Database.turn``: one server of an installation at a time does a periodic job."""

from __future__ import annotations

import pytest

from arkor.store.db import Database
from tests.servers import postgres_schema_url


def test_an_installation_in_another_schema_takes_its_own_turns(
        backend: str, db: Database) -> None:
    """Advisory locks are per database too: another schema's sweep holding its turn does not
    make this installation's skip; another server of this schema's does."""
    if backend != "postgres":
        pytest.skip("one process per SQLite file: every turn is its own")
    twin = Database(str(db.engine.url.render_as_string(hide_password=False)))
    try:
        with postgres_schema_url() as url:
            neighbour = Database(url)
            try:
                with neighbour.turn(7) as neighbours, db.turn(7) as ours:
                    assert neighbours and ours
                    with twin.turn(7) as twins:
                        assert not twins
            finally:
                neighbour.dispose()
    finally:
        twin.dispose()
