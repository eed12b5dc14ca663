"""Artifact store: a local folder or an S3 prefix (MinIO via AWS_ENDPOINT_URL), addressed by step refs.

A step's outputs live under "<kind>/<key>/". The manifest `_manifest.json` is written last; only a
manifest means the step is done. Work in progress is kept so a killed step can resume:
locally in "<kind>/<key>.partial/" (renamed into place when complete), on S3 under the final prefix
without a manifest (synced up as the step goes, pulled down again on restart).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import boto3

from limit.errors import LimitError

MANIFEST = "_manifest.json"
PRUNED = "_pruned.json"  # subfolders of a completed step deleted later (training.keep: selected)


def default_workdir() -> Path:
    return Path(os.environ.get("LIMIT_WORKDIR", "runs"))


def default_artifacts() -> str:
    return os.environ.get("LIMIT_ARTIFACTS", str(default_workdir() / "artifacts"))


class Store:
    """Base: a local folder. `S3Store` overrides the transport, not the layout."""

    def __init__(self, root: str, workdir: Path | None = None):
        self.root = root
        self.workdir = workdir or default_workdir()

    @staticmethod
    def open(root: str | None = None, workdir: Path | None = None) -> Store:
        root = root or default_artifacts()
        return S3Store(root, workdir) if root.startswith("s3://") else Store(root, workdir)

    def url(self, ref: str) -> str:
        return f"{self.root.rstrip('/')}/{ref}"

    # --- reading completed steps

    def manifest(self, ref: str) -> dict | None:
        path = Path(self.root) / ref / MANIFEST
        return json.loads(path.read_text()) if path.is_file() else None

    def fetch(self, ref: str, sub: str = "") -> Path:
        """Local path of a completed step's outputs (or one subfolder of them)."""
        if self.manifest(ref) is None:
            raise LimitError(f"{self.url(ref)}: upstream step is not complete (no {MANIFEST})")
        self._check_not_pruned(ref, sub)
        return Path(self.root) / ref / sub

    def pruned(self, ref: str) -> dict[str, str]:
        """Subfolders of a completed step that were deleted, and why."""
        path = Path(self.root) / ref / PRUNED
        return json.loads(path.read_text()) if path.is_file() else {}

    def _check_not_pruned(self, ref: str, sub: str) -> None:
        reason = self.pruned(ref).get(sub.split("/")[0]) if sub else None
        if reason:
            raise LimitError(f"{self.url(ref)}/{sub}: deleted after the step completed ({reason})")

    def prune(self, ref: str, subs: list[str], reason: str) -> None:
        """Delete subfolders of a completed step (weights nobody will read), recording which and why."""
        for sub in subs:
            shutil.rmtree(Path(self.root) / ref / sub, ignore_errors=True)
        self._write_pruned(ref, self.pruned(ref) | dict.fromkeys(subs, reason))

    def _write_pruned(self, ref: str, pruned: dict[str, str]) -> None:
        (Path(self.root) / ref / PRUNED).write_text(json.dumps(pruned, indent=2, sort_keys=True))

    # --- writing one step's outputs

    def begin(self, ref: str) -> Path:
        """A local folder for the step's outputs, holding whatever a killed earlier attempt left."""
        path = Path(self.root) / f"{ref}.partial"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def persist(self, ref: str, out: Path, sub: str) -> None:
        """Make `out/sub` durable before the step ends (a local folder already is)."""

    def discard(self, ref: str, out: Path, sub: str) -> None:
        """Delete `out/sub` and whatever `persist` made durable of it (e.g. resume state no longer needed)."""
        shutil.rmtree(out / sub, ignore_errors=True)

    def commit(self, ref: str, out: Path, manifest: dict) -> None:
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        final = Path(self.root) / ref
        if final.exists():  # a concurrent twin finished first; identical by construction
            shutil.rmtree(out)
            return
        out.rename(final)


class S3Store(Store):
    def __init__(self, root: str, workdir: Path | None = None):
        super().__init__(root, workdir)
        bucket_prefix = root.removeprefix("s3://")
        self.bucket, _, self.prefix = bucket_prefix.partition("/")
        self.prefix = self.prefix.strip("/")
        self.s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)

    def _key(self, ref: str, name: str = "") -> str:
        return "/".join(p for p in (self.prefix, ref, name) if p)

    def _objects(self, ref: str) -> dict[str, dict]:
        """Every stored object of a step (key -> S3's listing entry: Size, LastModified, ...)."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(ref) + "/")
        return {obj["Key"]: obj for page in pages for obj in page.get("Contents", [])}

    def manifest(self, ref: str) -> dict | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._key(ref, MANIFEST))["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return json.loads(body)

    def _download(self, ref: str, dest: Path, sub: str = "", skip_manifest: bool = False) -> None:
        base = self._key(ref) + "/"
        for key, obj in self._objects(ref).items():
            rel = key[len(base) :]
            if (sub and not rel.startswith(sub.rstrip("/") + "/")) or (skip_manifest and rel == MANIFEST):
                continue
            target = dest / rel
            if target.is_file() and target.stat().st_size == obj["Size"]:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(self.bucket, key, str(target))

    def pruned(self, ref: str) -> dict[str, str]:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._key(ref, PRUNED))["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return {}
        return json.loads(body)

    def prune(self, ref: str, subs: list[str], reason: str) -> None:
        self._delete([k for sub in subs for k in self._under(ref, sub)])
        self._write_pruned(ref, self.pruned(ref) | dict.fromkeys(subs, reason))

    def _write_pruned(self, ref: str, pruned: dict[str, str]) -> None:
        body = json.dumps(pruned, indent=2, sort_keys=True).encode()
        self.s3.put_object(Bucket=self.bucket, Key=self._key(ref, PRUNED), Body=body)

    def fetch(self, ref: str, sub: str = "") -> Path:
        manifest = self.manifest(ref)
        if manifest is None:
            raise LimitError(f"{self.url(ref)}: upstream step is not complete (no {MANIFEST})")
        self._check_not_pruned(ref, sub)
        cache = self.workdir / "cache" / ref
        done = cache / (f".fetched-{sub.replace('/', '_')}" if sub else ".fetched")
        if not done.is_file():
            self._download(ref, cache, sub)
            (cache / MANIFEST).write_text(json.dumps(manifest))
            done.touch()
        return cache / sub

    def begin(self, ref: str) -> Path:
        path = self.workdir / "partial" / ref
        path.mkdir(parents=True, exist_ok=True)
        self._download(ref, path, skip_manifest=True)
        return path

    def _upload(self, ref: str, out: Path, sub: str = "") -> None:
        """Upload `out/sub`, skipping files already uploaded and not modified since (multi-GB checkpoints)."""
        uploaded = self._objects(ref)
        for path in sorted((out / sub).rglob("*")):
            if not path.is_file():
                continue
            key = self._key(ref, path.relative_to(out).as_posix())
            remote, stat = uploaded.get(key), path.stat()
            if remote and remote["Size"] == stat.st_size and remote["LastModified"].timestamp() >= stat.st_mtime:
                continue
            self.s3.upload_file(str(path), self.bucket, key)

    def persist(self, ref: str, out: Path, sub: str) -> None:
        """Mirror `out/sub`: upload what changed and delete what is gone locally (a superseded resume
        checkpoint would otherwise stay in S3 and be downloaded again by every retry)."""
        self._upload(ref, out, sub)
        gone = [k for k in self._under(ref, sub) if not (out / k[len(self._key(ref)) + 1 :]).is_file()]
        self._delete(gone)

    def discard(self, ref: str, out: Path, sub: str) -> None:
        super().discard(ref, out, sub)
        self._delete(self._under(ref, sub))

    def _under(self, ref: str, sub: str) -> list[str]:
        return [k for k in self._objects(ref) if k.startswith(self._key(ref, sub.rstrip("/")) + "/")]

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # delete_objects takes at most 1000 keys
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def commit(self, ref: str, out: Path, manifest: dict) -> None:
        self._upload(ref, out)
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        self.s3.put_object(Bucket=self.bucket, Key=self._key(ref, MANIFEST), Body=body)
        shutil.rmtree(out, ignore_errors=True)

    def read_prefix(self, location: str, dest: Path) -> Path:
        """Download everything under an s3:// location (e.g. gauntlet data) into `dest`."""
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/")
        for page in pages:
            for obj in page.get("Contents", []):
                target = dest / obj["Key"][len(prefix.rstrip("/")) + 1 :]
                target.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(bucket, obj["Key"], str(target))
        return dest
