"""Housekeeping MLflow leaves to its users: a local store opened by one process at a time, artifacts that stay
in the work folder, and runs that a dead execution left RUNNING.

- Opening a fresh sqlite store creates its tables and migrates them; two processes doing it at once break
  each other (`No such constraint: ...`), so the first opening in each process holds a lock file beside it.
- MLflow resolves a local artifact location to an absolute path when an experiment is created, so a copied
  work folder would go on writing into the original one. Opened from a work folder that holds the database,
  experiments and runs recorded under another folder's `mlflow-artifacts` are moved under this one's: the
  locations are, in effect, relative to the work folder.
- A run is RUNNING until its process ends it. A process killed outright never does: runs whose process is
  gone (tags `limit.host` and `limit.pid`), and runs of a step whose lock the caller now holds (tag
  `limit.output`), are marked KILLED.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sqlite3
from pathlib import Path
from urllib.parse import unquote

import mlflow

ARTIFACTS = "mlflow-artifacts"
_opened: set[str] = set()


def local_database(uri: str) -> Path | None:
    """The file of a sqlite tracking URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri.removeprefix("sqlite:///")))


def open_store(uri: str, workdir: Path) -> mlflow.MlflowClient:
    """A client of `uri`; the first in this process creates (or migrates, or re-roots) a local store alone."""
    database = local_database(uri)
    if database is None or uri in _opened:
        return mlflow.MlflowClient(tracking_uri=uri)
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = mlflow.MlflowClient(tracking_uri=uri)  # creates (and migrates) the tables if there are none
        client.search_experiments(max_results=1)
        if database.resolve().parent == workdir.resolve():
            _reroot(database, artifact_root(workdir))
    _opened.add(uri)
    return client


def artifact_root(workdir: Path) -> str:
    return (workdir.resolve() / ARTIFACTS).as_uri()


def _reroot(database: Path, root: str) -> None:
    """Move locations recorded under another folder's `mlflow-artifacts` (a copied work folder's) under `root`."""
    with contextlib.closing(sqlite3.connect(database)) as db, db:  # commits on success
        old = {loc for (loc,) in db.execute("SELECT artifact_location FROM experiments") if loc}
        for location in sorted(old):
            if location == root or not location.endswith(f"/{ARTIFACTS}"):
                continue
            db.execute("UPDATE experiments SET artifact_location = ? WHERE artifact_location = ?", (root, location))
            db.execute(
                "UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) WHERE substr(artifact_uri, 1, ?) = ?",
                (root, len(location) + 1, len(location) + 1, f"{location}/"),
            )


def execution_tags() -> dict[str, str]:
    """What tells a later execution whether this process is still alive."""
    return {"limit.host": socket.gethostname(), "limit.pid": str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_dead_runs_killed(client: mlflow.MlflowClient, experiment_id: str, output: str | None = None) -> list[str]:
    """Mark KILLED the RUNNING runs of `experiment_id` whose process on this host is gone, and (`output`) those
    of the step writing to `output`, whose lock the caller holds. Returns their ids."""
    host = socket.gethostname()
    dead = []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=10_000):
        tags = run.data.tags
        pid = tags.get("limit.pid", "")
        gone = tags.get("limit.host") == host and pid.isdigit() and not _alive(int(pid))
        if gone or (output is not None and tags.get("limit.output") == output):
            client.set_terminated(run.info.run_id, "KILLED")
            dead.append(run.info.run_id)
    return dead
