"""The Alembic migrations build exactly the schema ``tables.py`` declares, on both backends,
and running them twice is harmless (every server start runs them)."""

from __future__ import annotations

import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from arkor.store.db import MIGRATIONS_DIR, Database, migrate
from arkor.store.tables import Base
from tests.servers import database_url


def test_migrations_match_the_models(backend, tmp_path) -> None:
    with database_url(backend, tmp_path) as url:
        db = Database(url)
        migrate(db.engine)
        migrate(db.engine)
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        db.dispose()
    assert diff == []


def test_downgrade_to_nothing_and_back(backend, tmp_path) -> None:
    with database_url(backend, tmp_path) as url:
        db = Database(url)
        migrate(db.engine)
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(sqlalchemy.inspect(db.engine).get_table_names()) <= {"alembic_version"}
        migrate(db.engine)
        assert "deployments" in sqlalchemy.inspect(db.engine).get_table_names()
        db.dispose()
