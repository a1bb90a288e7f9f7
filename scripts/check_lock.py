"""Fail when pyproject.toml and requirements.lock disagree (``make lock-check``).

Checks, with nothing but the standard library and pip's own copy of ``packaging``:

- every requirement of the project, of every extra and of the build system has a pin in the
  lock, and the pinned version satisfies the requirement's specifier;
- the lock was compiled for exactly the extras pyproject declares;
- every pin in the lock is ``==`` with at least one ``--hash``;
- the pins satisfy ``constraints.txt`` (torch stays the CPU build);
- with ``--installed``, the running environment has exactly the locked versions.

Run ``make lock`` to refresh the lock after changing pyproject.toml.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version
except ImportError:  # a fresh venv has only pip
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name
    from pip._vendor.packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def read_lock(path: Path) -> tuple[dict[str, Version], list[str]]:
    """``{name: version}`` of a pip-compile lock, and the problems of its own shape."""
    pins: dict[str, Version] = {}
    problems: list[str] = []
    entries: list[tuple[str, list[str]]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not raw.startswith((" ", "\t")):
            entries.append((line, []))
        elif entries:
            entries[-1][1].append(line)
    for head, rest in entries:
        match = _PIN.match(head)
        if match is None:
            problems.append(f"{path.name}: {head!r} is not an exact '==' pin")
            continue
        name, version = canonicalize_name(match.group(1)), Version(match.group(2))
        if not any("--hash=" in part for part in [head, *rest]):
            problems.append(f"{path.name}: {name}=={version} has no --hash")
        pins[name] = version
    return pins, problems


def project_requirements(pyproject: dict) -> list[Requirement]:
    project = pyproject["project"]
    own = canonicalize_name(project["name"])
    found = [Requirement(r) for r in project.get("dependencies", [])]
    for extra in project.get("optional-dependencies", {}).values():
        found += [Requirement(r) for r in extra]
    found += [Requirement(r) for r in pyproject.get("build-system", {}).get("requires", [])]
    return [r for r in found if canonicalize_name(r.name) != own]


def check(root: Path = ROOT, *, installed: bool = False) -> list[str]:
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    lock_path = root / "requirements.lock"
    pins, problems = read_lock(lock_path)
    for requirement in project_requirements(pyproject):
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} is in pyproject.toml but not in requirements.lock")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"requirements.lock pins {name}=={pins[name]}, outside '{requirement}'")
    extras = set(pyproject["project"].get("optional-dependencies", {}))
    header = lock_path.read_text().split("\n\n", 1)[0]
    locked_extras = set(re.findall(r"--extra[= ]([\w-]+)", header))
    if locked_extras != extras:
        problems.append(
            f"requirements.lock was compiled for extras {sorted(locked_extras)}, "
            f"pyproject.toml declares {sorted(extras)}"
        )
    constraints = root / "constraints.txt"
    for line in constraints.read_text().splitlines() if constraints.exists() else []:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is not None and not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"requirements.lock pins {requirement.name}=={pinned}, "
                            f"constraints.txt says '{requirement}'")
    if installed:
        problems += _installed_problems({**pins, **read_lock(root / "requirements-model.lock")[0]})
    return problems


def _installed_problems(pins: dict[str, Version]) -> list[str]:
    problems = []
    for name, version in sorted(pins.items()):
        try:
            have = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            problems.append(f"{name}=={version} is locked but not installed")
            continue
        if have != version:
            problems.append(f"{name} {have} is installed, the lock says {version}")
    return problems


def main(argv: list[str]) -> int:
    problems = check(installed="--installed" in argv)
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    if problems:
        print("lock: run `make lock` to bring requirements.lock in line with pyproject.toml",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
