"""What a manifest promises about each output file (its size and sha256), and the check that it still holds.

A manifest written by an older version lists file names only: those files are not checked.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def digest(path: Path) -> dict:
    """{"size", "sha256"} of one file, read once in chunks (a checkpoint is GBs)."""
    with open(path, "rb") as f:
        sha = hashlib.file_digest(f, "sha256").hexdigest()
    return {"size": path.stat().st_size, "sha256": sha}


def listed(manifest: dict, sub: str = "", skip: tuple[str, ...] = ()) -> dict[str, dict]:
    """The manifest's files under `sub` (all for ""), name -> digest, less those under a `skip` subfolder."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        return {}
    prefix = f"{sub.strip('/')}/" if sub else ""
    return {
        name: entry
        for name, entry in files.items()
        if name.startswith(prefix) and name.split("/")[0] not in skip and isinstance(entry, dict)
    }


def mismatch(path: Path, entry: dict, hashed: bool = True) -> str | None:
    """Why `path` is not the file `entry` describes (None: it is); `hashed`: also compare its sha256."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != entry.get("size"):
        return f"{size} bytes, the manifest says {entry.get('size')}"
    if hashed and entry.get("sha256") and digest(path)["sha256"] != entry["sha256"]:
        return "sha256 differs from the manifest's (same size: its bytes were changed)"
    return None


def fsync_tree(folder: Path) -> None:
    """Flush every file under `folder`, then each folder's entries, to disk (before the manifest says done)."""
    folders = {folder}
    for path in folder.rglob("*"):
        if path.is_file():
            fsync_path(path)
        folders.add(path.parent)
    for each in folders:
        fsync_folder(each)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
