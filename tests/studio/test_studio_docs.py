"""docs/studio.md names every Studio API route, and the UI ships inside the package."""

from __future__ import annotations

import re
from pathlib import Path

from arkor.studio import (
    api_deployments,
    api_domains,
    api_identity,
    api_inference,
    api_jobs,
    api_runs,
    api_status,
    api_training,
    api_usage,
)
from arkor.studio.config import STATIC_DIR

DOC = (Path(__file__).resolve().parents[2] / "docs" / "studio.md").read_text()


def test_every_api_route_is_documented() -> None:
    for module in (api_status, api_identity, api_jobs, api_training, api_inference,
                   api_deployments, api_runs, api_usage, api_domains):
        for route in module.routes:
            path = re.sub(r"\{(key|run)_id\}", r"{\1Id}", route.path)
            path = re.sub(r"\{(deployment|job)_id\}", "{id}", path)
            for method in route.methods - {"HEAD"}:
                assert f"`{method} {path}" in DOC, (method, path)


def test_every_page_module_is_imported_by_the_shell() -> None:
    shell = (STATIC_DIR / "app.js").read_text()
    for module in [*STATIC_DIR.glob("pages/*.js"), *STATIC_DIR.glob("components/*.js")]:
        assert f"./{module.parent.name}/{module.name}" in shell, module.name
    for path in STATIC_DIR.rglob("*.js"):
        assert len(path.read_text().splitlines()) < 600, path
