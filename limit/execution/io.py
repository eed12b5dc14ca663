"""Reading and writing the project's small files: JSON Lines, and writes that are whole or absent.

An atomic write goes to a temporary sibling and is renamed over the target, so a killed process leaves
either the old file or the new one, never half of it (a resumed step trusts what it finds).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from limit.errors import LimitError


def read_text(path: Path) -> str:
    """A text file's contents; a file that is not UTF-8 text (binary, Latin-1, ...) is a one-line error."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LimitError(f"{path}: not UTF-8 text (byte {e.start}: {data[e.start : e.start + 1]!r})") from None


def check_output(path: Path, what: str, folder: bool = False) -> None:
    """Refuse, before any work, an output path of the wrong kind: a folder where a file goes (or the
    reverse with `folder`), or one below an existing file. `what` names the flag or field."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        wanted, found = ("folder", "file") if folder else ("file", "folder")
        raise LimitError(f"{what}: {path} is a {found}: name a {wanted}")
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise LimitError(f"{what}: {existing} is a file, not a folder")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in read_text(path).splitlines() if line.strip()]


def jsonl_text(rows: Iterable[dict], sort_keys: bool = False) -> str:
    return "".join(json.dumps(row, ensure_ascii=False, sort_keys=sort_keys) + "\n" for row in rows)


def write_jsonl(rows: Iterable[dict], path: Path, sort_keys: bool = False) -> None:
    write_atomic(path, jsonl_text(rows, sort_keys))


def write_atomic(path: Path, data: str | bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if isinstance(data, bytes):
        staging.write_bytes(data)
    else:
        staging.write_text(data)
    staging.replace(path)


def write_json(path: Path, value, indent: int | None = 2, sort_keys: bool = False) -> None:
    write_atomic(path, json.dumps(value, indent=indent, sort_keys=sort_keys, ensure_ascii=False))
