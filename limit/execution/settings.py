"""The environment a command or step runs in, declared in one place: each LIMIT_* variable and its default.

Read when asked, not at import: `limit run --workdir` and tests set these variables after `limit` is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    workdir: Path  # LIMIT_WORKDIR: models, caches, logs, the local MLflow store
    artifacts: str  # LIMIT_ARTIFACTS: the artifact store, a folder or s3://bucket/prefix
    heartbeat_s: float  # LIMIT_HEARTBEAT_S: how often a running step says it is alive
    parent_run_id: str | None  # LIMIT_PARENT_RUN_ID: the study execution's MLflow run, when there is one
    study: str  # LIMIT_STUDY: the study a step belongs to


def settings() -> Settings:
    workdir = Path(os.environ.get("LIMIT_WORKDIR", "runs"))
    return Settings(
        workdir=workdir,
        artifacts=os.environ.get("LIMIT_ARTIFACTS", str(workdir / "artifacts")),
        heartbeat_s=float(os.environ.get("LIMIT_HEARTBEAT_S", "30")),
        parent_run_id=os.environ.get("LIMIT_PARENT_RUN_ID") or None,
        study=os.environ.get("LIMIT_STUDY", "adhoc"),
    )
