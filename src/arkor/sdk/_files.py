"""Where per-user state lives, and the one way we write a private file."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from pathlib import Path

DEFAULT_CLOUD_API_URL = "http://127.0.0.1:8787"


def arkor_home() -> Path:
    """``$ARKOR_HOME``, else ``~/.arkor``: credentials and the Studio token live here."""
    home = os.environ.get("ARKOR_HOME")
    return Path(home).expanduser() if home else Path.home() / ".arkor"


def write_private_file(path: Path, text: str) -> None:
    """Write atomically with mode 0600: temp file beside the target, then rename.

    A crash mid-write leaves the old file intact; readers never see a partial file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.chmod(tmp, 0o600)
        except OSError as exc:  # e.g. a filesystem without modes
            print(f"arkor: warning: could not chmod 0600 {tmp}: {exc}", file=sys.stderr)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
