"""A lock across processes for the suite's caches in ``.pytest_cache``: under pytest-xdist
two workers may ask for the same trained adapter or npm package at once, and each would
otherwise make it in the same place."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def making(entry: Path) -> Iterator[None]:
    """Hold ``entry``'s lock (a file beside it) while the block makes ``entry``; a second
    process waits here, then finds ``entry`` made."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    lock_path = entry.with_name(f".{entry.name}.lock")
    with os.fdopen(os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
