"""Artifact store: a local folder or an S3 prefix (MinIO via AWS_ENDPOINT_URL), addressed by step refs.

A step's outputs live under "<kind>/<key>/". The manifest `_manifest.json` is written last; only a
manifest means the step is done. Work in progress is kept so a killed step can resume: locally in
"<kind>/<key>.partial/" (renamed into place when complete); on S3 under the final prefix without a manifest.
One execution at a time writes a step's unfinished outputs: it holds the step's `lock` (a lock file, or an
S3 lease) from before its first write until after its manifest.

On S3 a step works in a local folder and makes parts of it durable as it goes (`persist`). Persisting is a
mirror of one subfolder, uploaded in the background from a hard-linked snapshot (so the step may go on, and
even delete or rewrite the files) in the order the files were written: a state whose last-written file is
remote is complete. `commit` waits for every upload. A retried attempt downloads only what it asks for
(`restore`), e.g. the newest complete training state rather than every epoch's weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import count
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError

from limit.errors import LimitError, UnavailableError
from limit.execution.digests import digest, fsync_folder, fsync_path, fsync_tree, listed, mismatch
from limit.execution.io import write_atomic, write_json
from limit.execution.leases import FileLock, S3Lease
from limit.execution.settings import settings

MANIFEST = "_manifest.json"


def step_name(kind: str, tags: dict[str, str]) -> str:
    """A step's readable name, from its input's tags (its MLflow run's name too), e.g. gauntlet-lima-e2."""
    name = "-".join([kind, *(tags[k] for k in ("run", "a", "b", "prompts", "dataset") if k in tags)])
    return f"{name}-e{tags['epoch']}" if "epoch" in tags else name


PRUNED = "_pruned.json"  # subfolders of a completed step deleted later (training.keep: selected)
REJECTED = "_rejected.json"  # the manifest of a step whose files no longer matched it (not done: redone)
ATTEMPTS = "_attempts"  # <root>/_attempts/<kind>/<key>.json: the latest attempt of a step (`limit status`)
# Multipart, concurrent uploads and downloads: a 30B checkpoint is hundreds of GB in a few large files.
TRANSFER = TransferConfig(multipart_threshold=64 * 2**20, multipart_chunksize=64 * 2**20, max_concurrency=8)


def default_workdir() -> Path:
    return settings().workdir


def default_artifacts(workdir: Path | None = None) -> str:
    """The store's location: LIMIT_ARTIFACTS, else `artifacts/` in `workdir` (default: the settings')."""
    return settings().artifacts if workdir is None else os.environ.get("LIMIT_ARTIFACTS", str(workdir / "artifacts"))


def local_files(folder: Path) -> list[str]:
    """Files under `folder`, relative, oldest first (the order they were written)."""
    if not folder.is_dir():
        return []
    paths = [p for p in folder.rglob("*") if p.is_file()]
    return [p.relative_to(folder).as_posix() for p in sorted(paths, key=lambda p: (p.stat().st_mtime_ns, str(p)))]


class Store:
    """Base: a local folder, where a step's outputs are durable as soon as they are written."""

    def __init__(self, root: str, workdir: Path | None = None):
        self.root = root
        self.workdir = workdir or default_workdir()
        self.held: dict[str, FileLock | S3Lease] = {}  # ref -> what this execution holds it with (`lock`)
        self._torn: set[str] = set()  # refs whose unreadable manifest was reported

    @staticmethod
    def open(root: str | None = None, workdir: Path | None = None) -> Store:
        root = root or default_artifacts(workdir)
        return S3Store(root, workdir) if root.startswith("s3://") else Store(root, workdir)

    def url(self, ref: str) -> str:
        return f"{self.root.rstrip('/')}/{ref}"

    # --- reading completed steps

    def manifest(self, ref: str) -> dict | None:
        path = Path(self.root) / ref / MANIFEST
        return self._parse_manifest(ref, path.read_bytes()) if path.is_file() else None

    def _parse_manifest(self, ref: str, body: bytes) -> dict | None:
        """The manifest, or None (not done) when it is torn: empty or not a JSON object (said once)."""
        try:
            manifest = json.loads(body)
        except ValueError:
            manifest = None
        if isinstance(manifest, dict):
            return manifest
        if ref not in self._torn:
            self._torn.add(ref)
            print(f"{self.url(ref)}/{MANIFEST}: unreadable (a torn write): the step is not done", file=sys.stderr)
        return None

    def read_text(self, ref: str, name: str) -> str | None:
        """One small file of a completed step's outputs (checked against its manifest), or None."""
        path = Path(self.root) / ref / name
        return self._checked_text(ref, name, path.read_bytes()) if path.is_file() else None

    def _checked_text(self, ref: str, name: str, body: bytes) -> str:
        entry = listed(self.manifest(ref) or {}).get(name)
        if entry:
            found = {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
            if found["size"] != entry.get("size"):
                self.reject(ref, name, f"{found['size']} bytes, the manifest says {entry.get('size')}")
            if entry.get("sha256") and found["sha256"] != entry["sha256"]:
                self.reject(ref, name, "sha256 differs from the manifest's (same size: its bytes were changed)")
        return body.decode()

    def fetch(self, ref: str, sub: str = "") -> Path:
        """Local path of a completed step's outputs (or one subfolder of them), checked against the manifest."""
        manifest = self.manifest(ref)
        if manifest is None:
            raise LimitError(f"{self.url(ref)}: upstream step is not complete (no {MANIFEST})")
        self._check_not_pruned(ref, sub)
        self.verify(ref, manifest, Path(self.root) / ref, sub)
        return Path(self.root) / ref / sub

    def verify(self, ref: str, manifest: dict, folder: Path, sub: str = "", hashed: bool = True) -> None:
        """Refuse (and mark not done) a step whose file under `folder/sub` is not the one its manifest lists."""
        for name, entry in listed(manifest, sub, skip=tuple(self.pruned(ref))).items():
            why = mismatch(folder / name, entry, hashed)
            if why and self._refetch(ref, folder, name):
                why = mismatch(folder / name, entry, hashed)
            if why:
                self.reject(ref, name, why)

    def check(self, ref: str) -> None:
        """Read every file of a completed step and refuse (marking it not done) one that is not as listed."""
        manifest = self.manifest(ref)
        if manifest is not None:
            self.verify(ref, manifest, Path(self.root) / ref)

    def _refetch(self, ref: str, folder: Path, name: str) -> bool:
        """Replace a local copy of one file from the store (True), where `folder` is a copy."""
        return False

    def reject(self, ref: str, name: str, why: str) -> None:
        """The step's output `name` is not what its manifest says: the step is no longer done (a rerun redoes
        it), and this one-line error says which file."""
        self._unmark(ref)
        raise LimitError(f"{self.url(ref)}/{name}: {why}: the step is marked not done; run again to redo it")

    def _unmark(self, ref: str) -> None:
        manifest = Path(self.root) / ref / MANIFEST
        with contextlib.suppress(FileNotFoundError):  # kept beside the files; the next commit replaces both
            manifest.replace(manifest.with_name(REJECTED))

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

    # --- steps in progress: what `limit status` reads

    def partial_files(self, ref: str) -> list[str]:
        """Durable files of a step that is not complete (what a retry would resume from), oldest first."""
        return local_files(Path(self.root) / f"{ref}.partial")

    def write_attempt(self, ref: str, attempt: dict) -> None:
        """Record the state of the step's latest attempt (running, with a heartbeat; failed; killed)."""
        write_json(Path(self.root) / ATTEMPTS / f"{ref}.json", attempt)

    def attempt(self, ref: str) -> dict | None:
        path = Path(self.root) / ATTEMPTS / f"{ref}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):  # absent, or being replaced
            return None

    # --- writing one step's outputs

    @contextlib.contextmanager
    def lock(self, ref: str, adopt: str | None = None) -> Iterator[FileLock | S3Lease]:
        """Hold `ref` for this execution alone, after waiting for any other holder (see `limit.execution.leases`);
        `adopt`: the owner token of a lock the process that relaunched this one holds."""
        held, done = self._hold(ref, adopt), False
        self.held[ref] = held
        try:
            yield held
            done = self.manifest(ref) is not None
        finally:
            self.held.pop(ref, None)
            held.release(done)

    def _check_held(self, ref: str) -> None:
        """Raise (exit 75) if this execution held `ref` and has lost it: nothing more of ours may land there."""
        if ref in self.held:
            self.held[ref].check()

    def _confirm_held(self, ref: str) -> None:
        if ref in self.held:
            self.held[ref].confirm()

    def _hold(self, ref: str, adopt: str | None) -> FileLock | S3Lease:
        return FileLock(Path(self.root) / f"{ref}.lock", ref, adopt)

    def begin(self, ref: str) -> Path:
        """A local folder for the step's outputs, holding whatever a killed earlier attempt left."""
        path = Path(self.root) / f"{ref}.partial"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def stored(self, ref: str, out: Path, sub: str) -> list[str]:
        """Files under `out/sub` that are durable (a retried attempt would find them), oldest first."""
        return [f"{sub}/{name}" for name in local_files(out / sub)]

    def restore(self, ref: str, out: Path, sub: str) -> None:
        """Bring `sub` of an earlier attempt's durable outputs into `out` (here: already there)."""

    def persist(self, ref: str, out: Path, sub: str, release: bool = False) -> None:
        """Make `out/sub` durable, mirroring it (here: it already is). `release`: the step no longer needs
        its local copy once durable (the store may delete it)."""

    def wait(self) -> None:
        """Return once everything persisted so far is durable."""

    def discard(self, ref: str, out: Path, sub: str) -> None:
        """Delete `out/sub` and whatever `persist` made durable of it (e.g. resume state no longer needed)."""
        shutil.rmtree(out / sub, ignore_errors=True)

    def commit(self, ref: str, out: Path, manifest: dict) -> None:
        """Write the manifest (each output file's size and sha256) last, once the files are on disk: the step
        is complete. A folder already there without a manifest (torn, rejected) is replaced."""
        self._confirm_held(ref)
        files = {name: digest(out / name) for name in local_files(out) if name != MANIFEST}
        fsync_tree(out)
        write_atomic(out / MANIFEST, json.dumps(manifest | {"files": files}, indent=2, sort_keys=True))
        fsync_path(out / MANIFEST)
        fsync_folder(out)
        final = Path(self.root) / ref
        if final.exists():
            if (final / MANIFEST).is_file() and self.manifest(ref) is not None:  # a concurrent twin finished
                shutil.rmtree(out)  # first; identical by construction
                return
            shutil.rmtree(final)
        out.rename(final)
        fsync_folder(final.parent)


class S3Store(Store):
    def __init__(self, root: str, workdir: Path | None = None):
        super().__init__(root, workdir)
        bucket_prefix = root.removeprefix("s3://")
        self.bucket, _, self.prefix = bucket_prefix.partition("/")
        self.prefix = self.prefix.strip("/")
        if not self.bucket:
            raise LimitError(f"{root}: name a bucket (s3://bucket/prefix)")
        self.s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
        self._check_bucket()
        self._uploads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="limit-persist")  # in order
        self._pending: list[Future] = []
        self._snapshots = count()
        self._lock = threading.Lock()
        self._digests: dict[str, tuple[int, int, dict]] = {}  # key -> (size, mtime_ns, digest) as uploaded

    def _check_bucket(self) -> None:
        """One request before any work: an unreachable endpoint is retryable (exit 75), a missing bucket or
        refused credentials are not."""
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as e:
            status = getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
            retry = isinstance(e, EndpointConnectionError | ConnectTimeoutError) or (status or 0) >= 500
            raise (UnavailableError if retry else LimitError)(f"{self.root}: {type(e).__name__}: {e}") from None

    def _key(self, ref: str, name: str = "") -> str:
        return "/".join(p for p in (self.prefix, ref, name) if p)

    def _objects(self, ref: str, sub: str = "") -> dict[str, dict]:
        """Stored objects of a step, or of one of its subfolders (key -> S3's listing entry)."""
        prefix = self._key(ref, sub.rstrip("/")) + "/"
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {obj["Key"]: obj for page in pages for obj in page.get("Contents", [])}

    def manifest(self, ref: str) -> dict | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self._key(ref, MANIFEST))["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return self._parse_manifest(ref, body)

    def _unmark(self, ref: str) -> None:
        """Not done, and nothing of it trusted by a retry's resume: the manifest moves aside, the files go."""
        body = self._get(self._key(ref, MANIFEST))
        if body is not None:
            self.s3.put_object(Bucket=self.bucket, Key=self._key(ref, REJECTED), Body=body)
        self._delete([self._key(ref, MANIFEST)])
        self._delete([k for k in self._objects(ref) if not k.endswith(f"/{REJECTED}")])
        shutil.rmtree(self.workdir / "cache" / ref, ignore_errors=True)

    def check(self, ref: str) -> None:
        """Stream every object of a completed step through sha256 (the objects, not their metadata)."""
        manifest = self.manifest(ref)
        if manifest is None:
            return
        objects = self._objects(ref)
        for name, entry in listed(manifest, skip=tuple(self.pruned(ref))).items():
            obj = objects.get(self._key(ref, name))
            if obj is None or obj["Size"] != entry.get("size"):
                found = "missing" if obj is None else f"{obj['Size']} bytes"
                self.reject(ref, name, f"{found}, the manifest says {entry.get('size')} bytes")
            body = self.s3.get_object(Bucket=self.bucket, Key=self._key(ref, name))["Body"]
            if entry.get("sha256") and hashlib.file_digest(body, "sha256").hexdigest() != entry["sha256"]:
                self.reject(ref, name, "sha256 differs from the manifest's (same size: its bytes were changed)")

    def _refetch(self, ref: str, folder: Path, name: str) -> bool:
        """A cached copy that does not match may be the cache's fault: download that file once more."""
        (folder / name).unlink(missing_ok=True)
        with contextlib.suppress(ClientError):
            self.s3.download_file(self.bucket, self._key(ref, name), str(folder / name), Config=TRANSFER)
        return True

    def _download(self, ref: str, dest: Path, sub: str = "") -> None:
        base = self._key(ref) + "/"
        for key, obj in self._objects(ref, sub).items():
            target = dest / key[len(base) :]
            if target.name == MANIFEST or (target.is_file() and target.stat().st_size == obj["Size"]):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(self.bucket, key, str(target), Config=TRANSFER)

    def _get(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None

    def pruned(self, ref: str) -> dict[str, str]:
        body = self._get(self._key(ref, PRUNED))
        return json.loads(body) if body is not None else {}

    def read_text(self, ref: str, name: str) -> str | None:
        body = self._get(self._key(ref, name))
        return self._checked_text(ref, name, body) if body is not None else None

    def partial_files(self, ref: str) -> list[str]:
        base = self._key(ref) + "/"
        remote = sorted(self._objects(ref).items(), key=lambda item: (item[1]["LastModified"], item[0]))
        return [key[len(base) :] for key, _ in remote]

    def write_attempt(self, ref: str, attempt: dict) -> None:
        body = json.dumps(attempt).encode()
        self.s3.put_object(Bucket=self.bucket, Key=self._key(f"{ATTEMPTS}/{ref}.json"), Body=body)

    def attempt(self, ref: str) -> dict | None:
        body = self._get(self._key(f"{ATTEMPTS}/{ref}.json"))
        return json.loads(body) if body is not None else None

    def prune(self, ref: str, subs: list[str], reason: str) -> None:
        self._delete([k for sub in subs for k in self._objects(ref, sub)])
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
        if done.is_file():
            self.verify(ref, manifest, cache, sub, hashed=False)  # hashed once, when downloaded
            return cache / sub
        self._download(ref, cache, sub)
        self.verify(ref, manifest, cache, sub)
        (cache / MANIFEST).write_text(json.dumps(manifest))
        done.touch()
        return cache / sub

    # --- writing: a local folder, mirrored up as the step goes

    def _hold(self, ref: str, adopt: str | None) -> FileLock | S3Lease:
        return S3Lease(self.s3, self.bucket, f"{self._key(ref)}.lease", ref, adopt)

    def begin(self, ref: str) -> Path:
        path = self.workdir / "partial" / ref
        path.mkdir(parents=True, exist_ok=True)
        return path

    def stored(self, ref: str, out: Path, sub: str) -> list[str]:
        self.wait()
        base = self._key(ref) + "/"
        remote = sorted(self._objects(ref, sub).items(), key=lambda item: (item[1]["LastModified"], item[0]))
        return [key[len(base) :] for key, _ in remote]

    def restore(self, ref: str, out: Path, sub: str) -> None:
        self._download(ref, out, sub)

    def persist(self, ref: str, out: Path, sub: str, release: bool = False) -> None:
        snapshot = self.workdir / "uploading" / f"{os.getpid()}-{next(self._snapshots)}"
        _link_tree(out / sub, snapshot)
        if release:
            shutil.rmtree(out / sub, ignore_errors=True)
        with self._lock:
            self._pending.append(self._uploads.submit(self._mirror, ref, snapshot, sub))

    def _mirror(self, ref: str, snapshot: Path, sub: str) -> None:
        """Upload what changed in `snapshot` as `sub`, oldest file first; then delete what is gone from it."""
        try:
            remote = self._objects(ref, sub)
            names = local_files(snapshot)
            for name in names:
                self._check_held(ref)
                key, stat = self._key(ref, f"{sub}/{name}"), (snapshot / name).stat()
                entry = remote.get(key)
                if entry and entry["Size"] == stat.st_size and entry["LastModified"].timestamp() >= stat.st_mtime:
                    continue
                self._upload(snapshot / name, key)
            wanted = {self._key(ref, f"{sub}/{name}") for name in names}
            self._check_held(ref)  # a lost lease: these may be the new holder's files
            self._delete([key for key in remote if key not in wanted])
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)

    def wait(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def discard(self, ref: str, out: Path, sub: str) -> None:
        self.wait()
        super().discard(ref, out, sub)
        self._delete(list(self._objects(ref, sub)))

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # delete_objects takes at most 1000 keys
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def _upload(self, path: Path, key: str) -> None:
        """Upload one file with its sha256 as metadata (hashed here, once: a retry reads it back)."""
        stat = path.stat()
        found = digest(path)
        self.s3.upload_file(
            str(path), self.bucket, key, Config=TRANSFER, ExtraArgs={"Metadata": {"sha256": found["sha256"]}}
        )
        self._digests[key] = (stat.st_size, stat.st_mtime_ns, found)

    def _local_digest(self, path: Path, key: str) -> dict:
        stat = path.stat()
        size, mtime, found = self._digests.get(key, (-1, -1, {}))
        return found if (size, mtime) == (stat.st_size, stat.st_mtime_ns) else digest(path)

    def _remote_digest(self, key: str, size: int) -> dict:
        """The digest of an object this execution did not upload (an earlier attempt did)."""
        if key in self._digests and self._digests[key][0] == size:
            return self._digests[key][2]
        sha = self.s3.head_object(Bucket=self.bucket, Key=key).get("Metadata", {}).get("sha256")
        if not sha:  # uploaded without one (an older version): read it once
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            sha = hashlib.file_digest(body, "sha256").hexdigest()
        return {"size": size, "sha256": sha}

    def commit(self, ref: str, out: Path, manifest: dict) -> None:
        self.wait()
        remote = self._objects(ref)
        base = self._key(ref) + "/"
        for name in local_files(out):
            key, local = base + name, self._local_digest(out / name, base + name)
            if key not in remote or self._remote_digest(key, remote[key]["Size"]) != local:
                self._check_held(ref)  # a lost lease: the object may be the new holder's
                self._upload(out / name, key)
        stored = {key[len(base) :]: obj["Size"] for key, obj in self._objects(ref).items()}
        names = sorted(set(stored) - {MANIFEST, PRUNED, REJECTED})
        files = {name: self._remote_digest(base + name, stored[name]) for name in names}
        body = json.dumps(manifest | {"files": files}, indent=2, sort_keys=True).encode()
        self._confirm_held(ref)  # a lease lost by now: another execution may be writing; it commits, not us
        try:  # the first manifest wins: a twin that committed first is identical by construction
            self.s3.put_object(Bucket=self.bucket, Key=self._key(ref, MANIFEST), Body=body, IfNoneMatch="*")
        except ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") not in (409, 412):
                raise
        shutil.rmtree(out, ignore_errors=True)


def _link_tree(source: Path, target: Path) -> None:
    """A copy of `source` whose files are hard links (no space, and immune to the source's deletion)."""
    for name in local_files(source):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source / name, target / name)
        except OSError:
            shutil.copy2(source / name, target / name)
