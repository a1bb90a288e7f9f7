"""The server's own files: 0700 directories and 0600 files, an existing data directory
tightened, the SQLite file created private before SQLite first opens it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from arkor.cloud.files import open_private, prepare_data_dir, private_dir
from arkor.cloud.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_prepare_data_dir_tightens_and_creates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True, mode=0o755)
    os.chmod(data, 0o755)
    os.chmod(data / "models", 0o777)
    settings = Settings(data_dir=data)
    prepare_data_dir(settings)
    assert {p.name: oct(mode(p)) for p in [data, *data.iterdir()]} == {
        "data": "0o700", "models": "0o700", "artifacts": "0o700", "datasets": "0o700",
        "arkor.sqlite3": "0o600"}
    os.chmod(data / "arkor.sqlite3", 0o644)
    prepare_data_dir(settings)  # every start
    assert mode(data / "arkor.sqlite3") == 0o600


def test_a_sqlite_file_elsewhere_is_private_too(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data",
                        database_url=f"sqlite:///{tmp_path / 'db' / 'arkor.db'}")
    prepare_data_dir(settings)
    assert (mode(tmp_path / "db"), mode(tmp_path / "db" / "arkor.db")) == (0o700, 0o600)
    prepare_data_dir(Settings(data_dir=tmp_path / "pg", database_url="postgresql://db/arkor"))
    assert sorted(p.name for p in (tmp_path / "pg").iterdir()) == ["artifacts", "datasets",
                                                                  "models"]


def test_private_dir_and_file(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        leaf = private_dir(tmp_path / "a" / "b" / "c")
        with open_private(leaf / "f.bin") as handle:
            handle.write(b"x")
        with open_private(leaf / "f.bin", "ab") as handle:
            handle.write(b"y")
    finally:
        os.umask(old)
    assert [oct(mode(p)) for p in (tmp_path / "a", tmp_path / "a" / "b", leaf)] == ["0o700"] * 3
    assert (leaf / "f.bin").read_bytes() == b"xy" and mode(leaf / "f.bin") == 0o600
