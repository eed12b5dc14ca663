"""images/constraints.txt: the images' lock, taken from the environment the tests ran in.

    python images/lock.py write    # rewrite the lock from this interpreter's installed distributions
    python images/lock.py check    # exit 1 when the lock disagrees with them (what `make test` asserts)

The lock pins every installed distribution but the project itself, as `name==version` (a local label such
as torch's `+cpu` is dropped, so the CUDA image can use the same line with its own wheel index). The check
covers what the images must reproduce: the project's runtime requirements (pyproject.toml), transitively.
Test-only tools may differ between machines without failing it.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "images" / "constraints.txt"
FIX = "bash images/build.sh lock"
PROJECT = "limit"


def installed() -> dict[str, tuple[str, str]]:
    """canonical name: (distribution name, version without local label), for this interpreter."""
    found: dict[str, tuple[str, str]] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and canonicalize_name(name) not in found:  # the first on sys.path wins, as for imports
            found[canonicalize_name(name)] = (name, Version(dist.version).public)
    return found


def lock_text(dists: dict[str, tuple[str, str]]) -> str:
    lines = [f"{name}=={version}" for key, (name, version) in dists.items() if key not in (PROJECT, "pip")]
    return "".join(f"{line}\n" for line in sorted(lines, key=str.lower))


def read_lock() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9._-]+)==([^\s#;]+)\s*", line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def project_requirements(pyproject: Path = REPO / "pyproject.toml") -> list[Requirement]:
    return [Requirement(r) for r in tomllib.loads(pyproject.read_text())["project"]["dependencies"]]


def _applies(req: Requirement, extra: str) -> bool:
    return req.marker is None or req.marker.evaluate({**default_environment(), "extra": extra})


def closure(roots: list[Requirement]) -> dict[str, set[str]]:
    """canonical name: the extras asked of it, for every distribution the roots need, transitively."""
    needed: dict[str, set[str]] = {}
    todo = [(req, "") for req in roots]
    while todo:
        req, extra = todo.pop()
        if not _applies(req, extra):
            continue
        key = canonicalize_name(req.name)
        new_extras = set(req.extras) - needed.get(key, set())
        if key in needed and not new_extras:
            continue
        needed.setdefault(key, set()).update(req.extras)
        try:
            requires = metadata.distribution(req.name).requires or []
        except metadata.PackageNotFoundError:
            continue  # reported by `problems` as not installed
        for extra_name in ("", *new_extras):
            todo.extend((Requirement(r), extra_name) for r in requires)
    return needed


def stale_environment() -> list[str]:
    """Requirements of pyproject.toml the environment does not meet: it predates them, so relocking from it
    would be wrong (`make install` first)."""
    dists = installed()
    return [
        f"{req.name}: installed {dists[key][1]}, pyproject.toml asks {req.specifier}"
        for req in project_requirements()
        if _applies(req, "")
        and (key := canonicalize_name(req.name)) in dists
        and not req.specifier.contains(dists[key][1], prereleases=True)
    ]


def problems() -> list[str]:
    """One line per runtime dependency whose lock line disagrees with the test environment."""
    dists, pins = installed(), read_lock()
    found = []
    for key in sorted(closure(project_requirements())):
        if key not in dists:
            found.append(f"{key}: required by the project but not installed here")
        elif pins.get(key) != dists[key][1]:
            found.append(f"{key}: tested with {dists[key][1]}, locked at {pins.get(key, 'nothing')}")
    return found


def main(argv: list[str]) -> int:
    if argv == ["write"]:
        LOCK.write_text(lock_text(installed()))
        print(f"wrote {LOCK.relative_to(REPO)} ({len(read_lock())} pins)")
        return 0
    if argv == ["check"]:
        found, stale = problems(), stale_environment()
        for line in found:
            print(f"images/constraints.txt: {line}")
        for line in stale:
            print(f"this environment: {line}")
        if found or stale:
            print("fix: make install" if stale else f"fix: {FIX}")
        return 1 if found or stale else 0
    print("usage: python images/lock.py write|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
