"""The contract's literals are spelled once, in ``arkor.contract``: a test fails when one of them
appears as a string anywhere else in the package (Python string constants, JavaScript strings).

Docstrings, help texts and messages may mention a name inside longer text; what is caught is a
string that *is* the literal, the thing code compares with or sends. Left out are literals that
are also everyday words or other fields' names: ``"none"``, ``"adapter"`` (also the target's
field), ``"checkpoints"`` (also a table), the sign-up policies ``"anonymous"`` and
``"disabled"`` (also a retention mode). The JobConfig names are kept to one table another way:
the SDK's options are :class:`~arkor.contract.job_config.TrainerOptions`, tested against
``FIELDS`` (tests/sdk/test_trainer.py).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from arkor.contract import artifacts, deployments, domains, events, models

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "arkor"
CONTRACT = PACKAGE / "contract"
# The migrations are history: they must keep the names they were written with.
HISTORY = PACKAGE / "store" / "migrations"

LITERALS = {
    *events.EVENT_TYPES,
    *deployments.AUTH_MODES[1:],  # "none" is an everyday word
    deployments.TARGET_BASE_MODEL,
    deployments.ADAPTER_FINAL, deployments.ADAPTER_CHECKPOINT,
    deployments.SLUG_FORMAT_MESSAGE, deployments.PROJECT_SLUG_MESSAGE,
    deployments.DAYS_MODE_NEEDS_DAYS, deployments.DAYS_ONLY_WITH_DAYS_MODE,
    deployments.KEY_LABEL_MESSAGE,
    *artifacts.ADAPTER_FILES,
    *models.ORG_ROLES,
    models.SIGNUP_INVITE,
    domains.CHALLENGE_PREFIX, *domains.DOMAIN_STATUSES, domains.DOMAIN_FORMAT_MESSAGE,
    domains.DOMAIN_TAKEN_MESSAGE, domains.NO_CHALLENGE_RECORD,
}
JS_LITERALS = {*events.EVENT_TYPES, deployments.AUTH_FIXED_KEY, deployments.TARGET_BASE_MODEL,
               deployments.ADAPTER_FINAL, deployments.ADAPTER_CHECKPOINT,
               *domains.DOMAIN_STATUSES, domains.CHALLENGE_PREFIX}


def _python_files() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py")
                  if not path.is_relative_to(CONTRACT) and not path.is_relative_to(HISTORY))


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def spelled_literals(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    skip = _docstrings(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value in LITERALS and id(node) not in skip]


def test_no_python_module_outside_the_contract_spells_a_contract_literal() -> None:
    found = [f"{path.relative_to(PACKAGE)}:{line}: {value!r}"
             for path in _python_files()
             for line, value in spelled_literals(path.read_text(encoding="utf-8"))]
    assert not found, "use the names in arkor.contract instead:\n" + "\n".join(found)


def test_no_studio_script_spells_a_contract_literal() -> None:
    pattern = re.compile("|".join(rf"""["'`]{re.escape(value)}["'`]""" for value in JS_LITERALS))
    found = [f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
             for path in sorted((PACKAGE / "studio" / "static").rglob("*.js"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if pattern.search(line)]
    assert not found, "import them from /contract.js instead:\n" + "\n".join(found)


@pytest.mark.parametrize("source", [
    'kind = "training.completed"',
    'if mode == "fixed_api_key": pass',
    'name = "adapter_model.safetensors"',
    'files = ("adapter_config.json",)',
])
def test_the_scan_catches_a_spelled_literal(source: str) -> None:
    assert spelled_literals(source)


def test_the_scan_leaves_docstrings_and_longer_text_alone() -> None:
    source = '"""Writes training.completed."""\nhelp = "fixed_api_key or none."\n'
    assert spelled_literals(source) == []
