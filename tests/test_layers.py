"""The control plane and the edge are siblings: ``arkor.cloud`` never imports ``arkor.edge``
and ``arkor.edge`` never imports ``arkor.cloud``, directly or through another module. Only the
composition root (``arkor.server``) and the middleware around both apps import the two."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "arkor"
SIBLINGS = [("cloud", "edge"), ("edge", "cloud")]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for each import in ``path``; ``from arkor import edge`` counts as
    ``arkor.edge``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def reaches(module: str, package: str) -> bool:
    return module == f"arkor.{package}" or module.startswith(f"arkor.{package}.")


@pytest.mark.parametrize(("package", "sibling"), SIBLINGS)
def test_no_module_imports_its_sibling(package: str, sibling: str) -> None:
    offending = [f"{path.relative_to(SRC.parent)}:{line}: {module}"
                 for path in sorted((SRC / package).rglob("*.py"))
                 for line, module in imported_modules(path) if reaches(module, sibling)]
    assert offending == [], (f"arkor.{package} imports arkor.{sibling}; move what both need "
                             "to a neutral module, or assemble it in arkor.server")


@pytest.mark.parametrize(("package", "sibling"), SIBLINGS)
def test_importing_a_package_loads_nothing_of_its_sibling(package: str, sibling: str) -> None:
    modules = sorted(".".join(("arkor", *path.relative_to(SRC).with_suffix("").parts))
                     for path in (SRC / package).rglob("*.py") if path.stem != "__init__")
    script = (f"import importlib, sys\nfor name in {modules!r}: importlib.import_module(name)\n"
              f"print(sorted(m for m in sys.modules if m.startswith('arkor.{sibling}')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "[]", f"arkor.{package} loads {result.stdout.strip()}"


def test_the_contract_is_a_leaf() -> None:
    """``arkor.contract`` imports nothing of ours outside itself (pydantic and the standard
    library only), so every layer, the SDK included, can depend on it."""
    offending = [f"{path.relative_to(SRC.parent)}:{line}: {module}"
                 for path in sorted((SRC / "contract").rglob("*.py"))
                 for line, module in imported_modules(path)
                 if module.startswith("arkor") and not reaches(module, "contract")]
    assert offending == []


def test_the_sdk_imports_no_server_code() -> None:
    offending = [f"{path.relative_to(SRC.parent)}:{line}: {module}"
                 for path in sorted((SRC / "sdk").rglob("*.py"))
                 for line, module in imported_modules(path)
                 if module.startswith("arkor.") and not reaches(module, "sdk")
                 and not reaches(module, "contract") and not module.startswith("arkor._version")]
    assert offending == []
