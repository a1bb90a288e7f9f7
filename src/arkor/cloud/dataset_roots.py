"""Which server paths a job may name as its dataset (``{"type": "local"}`` or ``"huggingface"``).

None, unless the operator lists roots in ``ARKOR_DATASET_ROOTS``. A path is resolved first
(symlinks followed, ``..`` collapsed) and must then lie inside a root and outside the data
directory, where other projects' uploads live. Every refusal reads the same whether or not
the path exists, so the answer says nothing about the server's files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from arkor.cloud.settings import Settings
from arkor.training.errors import JobConfigError

NOT_ENABLED = (
    "names a path on the server, and this server does not read datasets from its disk. "
    "Upload the file (POST /v1/datasets) and use {\"type\": \"upload\", \"uploadId\": ...}; "
    "an operator can allow directories with ARKOR_DATASET_ROOTS"
)
OUTSIDE = (
    "must be a path inside one of the server's dataset roots (ARKOR_DATASET_ROOTS) and "
    "outside its data directory. Or upload the file (POST /v1/datasets) and use "
    "{\"type\": \"upload\", \"uploadId\": ...}"
)


def dataset_path_check(settings: Settings) -> Callable[[Path], Path]:
    """A function that returns the resolved path, or raises :class:`JobConfigError`."""
    roots = tuple(root.resolve() for root in settings.dataset_roots)
    data_dir = settings.data_dir.resolve()

    def check(path: Path) -> Path:
        if not roots:
            raise JobConfigError("datasetSource", NOT_ENABLED)
        try:
            resolved = path.expanduser().resolve()
        except (OSError, RuntimeError, ValueError):
            raise JobConfigError("datasetSource", OUTSIDE) from None
        inside = any(resolved.is_relative_to(root) for root in roots)
        if not inside or resolved.is_relative_to(data_dir):
            raise JobConfigError("datasetSource", OUTSIDE)
        return resolved

    return check
