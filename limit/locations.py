"""Where local input files live: plain paths, or `fixture:NAME` for files shipped inside the package."""

from __future__ import annotations

import hashlib
from pathlib import Path

from limit.errors import LimitError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"  # YAML only: studies, profiles, golden manifests


def local_path(location: str) -> Path:
    """`fixture:tiny/lima.jsonl` -> the packaged file; anything else is a path (relative to the cwd)."""
    if location.startswith("fixture:"):
        return FIXTURES / location.removeprefix("fixture:")
    return Path(location).expanduser()


def local_file_sha256(location: str, field: str) -> str:
    """Content hash of a local input file; `field` names the spec field in the error if it is missing."""
    path = local_path(location)
    if not path.is_file():
        raise LimitError(f"{field}: file not found: {location}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def local_tree_sha256(locations: str) -> str | None:
    """Content hash of the .jsonl files under the local folders in a comma-separated location list.

    Remote parts (s3://, llm-foundry@<commit>) are not hashed: a commit pins its content, an S3 prefix is
    trusted not to change under the same name. None when no part is local.
    """
    digest = hashlib.sha256()
    local = False
    for part in (p.strip() for p in locations.split(",")):
        if part.startswith("s3://") or "@" in part:
            continue
        folder = local_path(part)
        if not folder.is_dir():
            continue  # the gauntlet step reports what it cannot find
        local = True
        for path in sorted(folder.rglob("*.jsonl")):
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest() if local else None
