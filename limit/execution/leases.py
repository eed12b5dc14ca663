"""One execution of a step at a time: what a step holds while it writes its unfinished outputs.

Locally, an exclusive `flock` on "<kind>/<key>.lock" beside the step's `.partial` folder: the kernel drops it
when its process dies, however it dies. On S3, a lease object "<prefix>/<kind>/<key>.lease" naming its owner and
an expiry: created only if absent (a conditional put, `If-None-Match: *`), renewed in the background and taken
over, once expired, only by the one conditional write (`If-Match` on its ETag) that wins. A second execution
waits for the holder, then finds the step complete (and reuses it) or resumes what the holder left.
A renewal that fails (any error) is retried; once the lease has expired unrenewed it is lost, whatever the
error: the holder may persist nothing more, and its commit, which renews first, refuses (exit 75).

A torchrun relaunch replaces the process that holds the lock: `handoff` keeps a lock file open across the
exec; an S3 lease is adopted by rank 0 of the relaunched step, which knows its owner token.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from limit.errors import UnavailableError

HANDOFF = "LIMIT_STEP_LOCK"  # the owner token a relaunched step adopts


def owner_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _waiting(ref: str, holder: str) -> None:
    print(f"[{ref}] another execution holds this step ({holder or 'unknown'}): waiting for it", file=sys.stderr)


class FileLock:
    """An exclusive lock file, held until `release` or the death of the process."""

    def __init__(self, path: Path, ref: str, adopt: str | None = None):
        self.path, self.ref, self.token = path, ref, adopt or owner_token()
        self.fd: int | None = None
        if adopt:  # the process that relaunched us still holds the file open, hence the lock
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _waiting(ref, os.pread(self.fd, 200, 0).decode(errors="replace"))
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, self.token.encode(), 0)

    def handoff(self) -> dict[str, str]:
        """What a process exec'd in our place needs to go on holding the lock (the descriptor stays open)."""
        if self.fd is not None:
            os.set_inheritable(self.fd, True)
        return {HANDOFF: self.token}

    def check(self) -> None:
        """A lock file cannot be lost while its holder lives."""

    def confirm(self) -> None:
        """Nothing to renew: the kernel holds the lock for us."""

    def release(self, done: bool) -> None:
        """Unlock; `done`: the step is complete, and whoever waits on this file will find its manifest."""
        if self.fd is None:
            return
        if done:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None


class S3Lease:
    """A lease object with an owner and an expiry, renewed every `seconds / 5` while held."""

    seconds = 300.0  # a holder killed without releasing blocks others at most this long
    poll = 5.0

    def __init__(self, s3, bucket: str, key: str, ref: str, adopt: str | None = None):
        self.s3, self.bucket, self.key, self.ref = s3, bucket, key, ref
        self.token = adopt or owner_token()
        self.lost = False
        self.expires = 0.0  # the expiry of the lease object this execution last wrote
        self._renewing = threading.Lock()  # the renewer and `confirm` must not race on one ETag
        self._stop = threading.Event()
        self.etag = self._acquire()
        self._renewer = threading.Thread(target=self._renew, name="limit-lease", daemon=True)
        self._renewer.start()

    def _put(self, **condition) -> str | None:
        """The new ETag, or None when the condition failed (someone else wrote first)."""
        # the expiry counts from before the request: a slow reply must not make us believe in a longer lease
        expires = time.time() + self.seconds
        body = json.dumps({"owner": self.token, "expires": expires}).encode()
        try:
            etag = self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=body, **condition)["ETag"]
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (409, 412):  # 409: a concurrent conditional write is in progress
                return None
            raise
        self.expires = expires
        return etag

    def _current(self) -> tuple[str, dict] | None:
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except self.s3.exceptions.NoSuchKey:
            return None
        return got["ETag"], json.loads(got["Body"].read())

    def _acquire(self) -> str:
        announced = False
        while True:
            etag = self._put(IfNoneMatch="*")
            if etag:
                return etag
            current = self._current()
            if current is None:  # released meanwhile
                continue
            etag, lease = current
            if lease.get("owner") == self.token or lease.get("expires", 0) < time.time():
                taken = self._put(IfMatch=etag)
                if taken:
                    return taken
                continue
            if not announced:
                _waiting(self.ref, lease.get("owner", ""))
                announced = True
            time.sleep(self.poll)

    def _renew(self) -> None:
        """Renew until released; a failed renewal is retried at the next tick, and once the lease has expired
        unrenewed, another execution may hold it: lost, whatever the error was."""
        while not self._stop.wait(self.seconds / 5):
            try:
                if self.renew():
                    continue
            except (BotoCoreError, ClientError) as e:
                if time.time() < self.expires:
                    print(f"[{self.ref}] renewing the lease failed ({type(e).__name__}): retrying", file=sys.stderr)
                    continue
            self._lose()
            return

    def renew(self) -> bool:
        """Extend the lease now; False: another execution has written it since (taken over). Raises what S3
        raised when it could not tell."""
        with self._renewing:
            etag = self._put(IfMatch=self.etag)
            if etag is None:
                return False
            self.etag = etag
            return True

    def _lose(self) -> None:
        self.lost = True
        print(f"[{self.ref}] lost the lease on this step: another execution may hold it", file=sys.stderr)

    def handoff(self) -> dict[str, str]:
        return {HANDOFF: self.token}

    def check(self) -> None:
        """Raise unless this execution still holds the lease (also when the renewer has not yet noticed)."""
        if self.lost or time.time() >= self.expires:
            raise UnavailableError(f"{self.ref}: the lease expired and another execution may hold the step")

    def confirm(self) -> None:
        """Renew synchronously and raise unless that succeeded: what a commit does just before its manifest,
        so no execution commits on a lease it no longer holds."""
        self.check()
        try:
            held = self.renew()
        except (BotoCoreError, ClientError) as e:
            raise UnavailableError(f"{self.ref}: could not renew the lease before committing: {e}") from None
        if not held:
            self._lose()
        self.check()

    def release(self, done: bool) -> None:
        self._stop.set()
        self._renewer.join()
        if not self.lost:
            with contextlib.suppress(ClientError):  # taken over after all: the new holder's lease stays
                self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
