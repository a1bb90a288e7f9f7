"""Docs tied to code: settings, routes, CLI commands and the SDK example."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

from arkor.cli.reference import render_cli_reference
from arkor.cloud.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[1]


def read(path: str) -> str:
    return (ROOT / path).read_text()


def test_every_setting_is_documented() -> None:
    doc = read("docs/self-hosting.md")
    for setting in SETTINGS:
        assert setting.env in doc, setting
        assert setting.name in doc, setting


def documented_path(path: str) -> str:
    """``/v1/endpoints/{deployment_id}/runs/{run_id}`` as api.md writes it: ``{id}``, and the
    second id by its name (``{keyId}``, ``{runId}``, ``{domain}``)."""
    return re.sub(r"\{[a-z_]+\}", "{id}", path).replace(
        "{id}/keys/{id}", "{id}/keys/{keyId}").replace("{id}/runs/{id}", "{id}/runs/{runId}"
    ).replace("{id}/domains/{id}", "{id}/domains/{domain}")


def test_every_route_is_documented(cloud) -> None:
    import httpx

    spec = httpx.get(cloud.url + "/openapi.json").json()
    doc = read("docs/api.md")
    for path, item in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        documented = documented_path(path)
        for method in item:
            assert f"{method.upper()} {documented}" in doc, (method, path)


def test_the_role_matrix_is_documented_row_by_row() -> None:
    from arkor.cloud.roles import ROUTE_ROLES

    doc = read("docs/api.md")
    for (method, path), role in ROUTE_ROLES.items():
        documented = documented_path(path)
        assert f"| `{method} {documented}` | {role} |" in doc, (method, path, role)


def test_cli_reference_is_current() -> None:
    assert read("docs/cli.md") == render_cli_reference(), (
        "docs/cli.md is stale: run `python -m arkor.cli.reference > docs/cli.md`"
    )


def test_readme_starts_with_the_two_commands() -> None:
    lines = [line for line in read("README.md").splitlines() if line.startswith("make ")]
    assert [line.split()[:2] for line in lines[:2]] == [["make", "dev"], ["make", "test"]]


def test_readme_sdk_example_is_the_tested_file() -> None:
    example = read("docs/examples/sdk_deployments.py")
    code = example.split('"""', 2)[2].strip()
    assert code in read("README.md")


def test_sdk_example_runs(cloud, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", cloud.url)
    runpy.run_path(str(ROOT / "docs/examples/sdk_deployments.py"), run_name="__main__")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ark_live_")
    assert out[1] == f"production {out[0][:17]} True"
