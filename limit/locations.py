"""Where local input files live: plain paths, or `fixture:NAME` for files shipped inside the package."""

from __future__ import annotations

import hashlib
from pathlib import Path

from limit.errors import LimitError

FIXTURES = Path(__file__).resolve().parent / "fixtures"


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
