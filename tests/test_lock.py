"""The lock file is the install: it agrees with pyproject.toml, and this environment is it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import check_lock  # noqa: E402


def test_the_lock_agrees_with_pyproject() -> None:
    assert check_lock.check(ROOT) == []


def test_the_bench_lock_is_pinned_hashed_and_agrees_with_the_main_lock() -> None:
    bench, problems = check_lock.read_lock(ROOT / "requirements-bench.lock")
    main, _ = check_lock.read_lock(ROOT / "requirements.lock")
    assert problems == []
    assert {"llama-cpp-python", "diskcache", "numpy"} <= set(bench)
    assert {name: bench[name] for name in bench if name in main} == {
        name: main[name] for name in bench if name in main
    }


@pytest.mark.skipif(bool(os.environ.get("ARKOR_LOCK_LIFTED")),
                    reason="this run installed the newest releases on purpose")
def test_this_environment_is_exactly_the_lock() -> None:
    assert check_lock.check(ROOT, installed=True) == []


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "requirements.lock", "requirements-model.lock",
                 "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_a_new_dependency_missing_from_the_lock_is_caught(copy: Path) -> None:
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(
        '"httpx>=0.27,<1",', '"httpx>=0.27,<1",\n    "left-pad-nowhere>=1",'))
    assert check_lock.check(copy) == [
        "left-pad-nowhere>=1 is in pyproject.toml but not in requirements.lock"]


def test_a_pin_outside_pyproject_bounds_is_caught(copy: Path) -> None:
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"httpx>=0.27,<1"', '"httpx>=9"'))
    problems = check_lock.check(copy)
    assert len(problems) == 1 and "outside 'httpx>=9'" in problems[0]


def test_an_unhashed_or_loose_pin_is_caught(copy: Path) -> None:
    lock = copy / "requirements.lock"
    lock.write_text(lock.read_text() + "\nsomething>=1\nother==2.0\n")
    problems = check_lock.check(copy)
    assert "requirements.lock: 'something>=1' is not an exact '==' pin" in problems
    assert "requirements.lock: other==2.0 has no --hash" in problems


def test_a_new_extra_that_was_not_locked_is_caught(copy: Path) -> None:
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(
        "[project.scripts]", 'docs = ["httpx"]\n\n[project.scripts]'))
    assert any("declares ['cloud', 'dev', 'docs', 'local']" in p for p in check_lock.check(copy))
