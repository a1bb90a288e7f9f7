"""``~/.arkor/studio-token``: this launch's token, for tools that serve the UI elsewhere."""

from __future__ import annotations

import contextlib
from pathlib import Path

from arkor.sdk import arkor_home, write_private_file


def studio_token_path() -> Path:
    return arkor_home() / "studio-token"


def write_studio_token(token: str, path: Path | None = None) -> Path:
    path = path or studio_token_path()
    write_private_file(path, token)
    return path


def remove_studio_token(token: str, path: Path | None = None) -> bool:
    """Remove the file only while it still holds ``token`` (a newer launch may own it)."""
    path = path or studio_token_path()
    try:
        if path.read_text(encoding="utf-8") != token:
            return False
    except OSError:
        return False
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return True
