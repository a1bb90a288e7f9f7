"""The server's files are private to the account that runs it: directories 0700, files 0600.

The data directory and its known sub-directories are made (or tightened) to 0700 on start,
and a SQLite database file is created 0600 before the first connection (SQLite gives its
``-wal`` and ``-shm`` files the database file's mode). What the server writes afterwards
goes through :func:`private_dir` and :func:`open_private`; the training runner sets its
umask to 0o077 (see ``arkor.training.runner``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, cast

from sqlalchemy.engine import make_url

from arkor.cloud.settings import Settings

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``mkdir -p`` where every directory it creates is 0700."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(directory, DIR_MODE)
    return path


def open_private(path: Path, mode: str = "wb") -> BinaryIO:
    """Open ``path`` for writing (``"wb"`` or ``"ab"``), created 0600 if it is new."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "ab" else os.O_TRUNC)
    return cast(BinaryIO, os.fdopen(os.open(path, flags, FILE_MODE), mode))


def prepare_data_dir(settings: Settings) -> None:
    """Create the data directory 0700 (tightening an existing one), and the SQLite file 0600."""
    for directory in (settings.data_dir, settings.models_dir, settings.artifacts_dir,
                      settings.data_dir / "datasets"):
        private_dir(directory)
        os.chmod(directory, DIR_MODE)
    url = make_url(settings.db_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(url.database)
        private_dir(database.parent)
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, FILE_MODE))
        os.chmod(database, FILE_MODE)
