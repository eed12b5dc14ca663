"""Where inputs live: plain paths, `fixture:NAME` for files shipped inside the package, and the typed
locations of gauntlet data (folders, fixtures, S3 prefixes, llm-foundry commits), parsed in one place."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from limit.errors import LimitError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"  # YAML only: studies, profiles, golden manifests


def local_path(location: str) -> Path:
    """`fixture:tiny/lima.jsonl` -> the packaged file; anything else is a path (relative to the cwd)."""
    if location.startswith("fixture:"):
        return fixture(location.removeprefix("fixture:"))
    return Path(location).expanduser()


def fixture(name: str) -> Path:
    """A packaged fixture; a name that climbs out of the fixtures folder (`..`, absolute) is refused."""
    path = (FIXTURES / name).resolve()
    if not path.is_relative_to(FIXTURES):
        raise LimitError(f"fixture:{name}: not inside the packaged fixtures (no '..' or absolute paths)")
    return path


def local_file_sha256(location: str, field: str) -> str:
    """Content hash of a local input file; `field` names the spec field in the error if it is missing."""
    try:
        path = local_path(location)
    except LimitError as e:
        raise LimitError(f"{field}: {e}") from None
    if not path.is_file():
        raise LimitError(f"{field}: file not found: {location}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


LLM_FOUNDRY = re.compile(r"^llm-foundry@([0-9a-f]{40})$")
# Full commits of short forms seen in the wild, suggested in the refusal (never substituted silently).
KNOWN_COMMITS = ("be467aee1744566e46e9b993c1ff23ab01fe5c55",)  # the paper's gauntlet, 2023-11-06


@dataclass(frozen=True)
class Location:
    """One place input files come from: a local folder, a packaged fixture, an S3 prefix or an llm-foundry
    commit (whose `scripts/eval/local_data/` is read from GitHub's raw file host)."""

    kind: Literal["folder", "fixture", "s3", "llm-foundry"]
    value: str  # the path, the fixture name, the s3:// URL or the 40-hex commit

    @property
    def local(self) -> bool:
        return self.kind in ("folder", "fixture")

    @property
    def path(self) -> Path:
        return FIXTURES / self.value if self.kind == "fixture" else Path(self.value).expanduser()

    def __str__(self) -> str:
        return {"fixture": f"fixture:{self.value}", "llm-foundry": f"llm-foundry@{self.value}"}.get(
            self.kind, self.value
        )


def parse_locations(text: str) -> list[Location]:
    """A comma-separated list of locations; ValueError names the part that is not one.

    An llm-foundry commit must be whole (raw file hosts need not resolve a short one, and nothing is looked up
    before a pod runs); a known short form is answered with its full commit.
    """
    parsed = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise ValueError(f"empty location in '{text}'")
        if part.startswith("s3://"):
            parsed.append(Location("s3", part))
        elif part.startswith("llm-foundry@"):
            match = LLM_FOUNDRY.match(part)
            if not match:
                commit = part.removeprefix("llm-foundry@")
                known = [c for c in KNOWN_COMMITS if len(commit) >= 7 and c.startswith(commit)]
                hint = f": llm-foundry@{known[0]}" if known else ""
                raise ValueError(f"'{part}': give the full 40-hex-digit llm-foundry commit{hint}")
            parsed.append(Location("llm-foundry", match.group(1)))
        elif part.startswith("fixture:"):
            try:
                fixture(part.removeprefix("fixture:"))
            except LimitError as e:
                raise ValueError(str(e)) from None
            parsed.append(Location("fixture", part.removeprefix("fixture:")))
        else:
            parsed.append(Location("folder", part))
    return parsed


def local_tree_sha256(locations: list[Location]) -> str | None:
    """Content hash of the .jsonl files under the local folders of a location list.

    Remote parts (s3://, llm-foundry@<commit>) are not hashed: a commit pins its content, an S3 prefix is
    trusted not to change under the same name. None when no part is local.
    """
    digest = hashlib.sha256()
    local = False
    for location in locations:
        folder = location.path
        if not location.local or not folder.is_dir():
            continue  # the gauntlet step reports what it cannot find
        local = True
        for path in sorted(folder.rglob("*.jsonl")):
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest() if local else None
