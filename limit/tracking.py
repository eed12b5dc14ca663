"""MLflow: one parent run per study execution, a child run per step.

The backend opens the parent run and hands its id to steps through LIMIT_PARENT_RUN_ID; a step's child run
carries tags (study, step kind, model, dataset, epoch, ...) so MLflow's comparison views can group them.
"""

from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow

from limit.mlflow_store import artifact_root, execution_tags, mark_dead_runs_killed, open_store

DEFAULT_URI = "sqlite:///runs/mlflow.db"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)


def experiment_name(study: str) -> str:
    return f"limit-{study}"


def experiment_id(study: str) -> str:
    """The study's experiment, created on first use.

    With a local store (sqlite or a folder) MLflow would put artifacts in ./mlruns of whatever folder the
    process runs in; keep them beside the store in the work folder instead. A tracking server decides itself.
    """
    client = mlflow.MlflowClient()
    existing = client.get_experiment_by_name(experiment_name(study))
    if existing is not None:
        return existing.experiment_id
    location = None
    if not tracking_uri().startswith(("http://", "https://", "databricks")):
        location = artifact_root(_workdir())
    try:
        return client.create_experiment(experiment_name(study), artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created concurrently by another step
        return client.get_experiment_by_name(experiment_name(study)).experiment_id


def _workdir() -> Path:
    return Path(os.environ.get("LIMIT_WORKDIR", "runs"))


def start_parent(study: str, tags: dict[str, str] | None = None) -> str:
    """Create the study execution's parent run and return its id (left open: children attach to it).

    Runs that executions on this machine left RUNNING when they were killed are marked KILLED first."""
    mlflow.set_tracking_uri(tracking_uri())
    client = open_store(tracking_uri(), _workdir())
    exp_id = experiment_id(study)
    mark_dead_runs_killed(client, exp_id)
    run = client.create_run(exp_id, run_name=study, tags={"limit.study": study, **(tags or {})})
    return run.info.run_id


def end_parent(run_id: str, status: str = "FINISHED") -> None:
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.MlflowClient().set_terminated(run_id, status)


def _child_tags(study: str, kind: str, key: str, tags: dict[str, str]) -> dict[str, str]:
    return {
        "limit.study": study,
        "limit.kind": kind,
        "limit.key": key,
        **{f"limit.{k}": v for k, v in tags.items()},
    }


def _child_name(kind: str, tags: dict[str, str]) -> str:
    name = "-".join([kind, *(tags[k] for k in ("run", "a", "b", "prompts", "dataset") if k in tags)])
    return f"{name}-e{tags['epoch']}" if "epoch" in tags else name


@contextlib.contextmanager
def step_run(kind: str, key: str, tags: dict[str, str], output: str | None = None) -> Iterator[None]:
    """The step's child run (under LIMIT_PARENT_RUN_ID when set), active while the step runs.

    `output`: where the step writes, whose lock the caller holds: a RUNNING run of it is of a dead execution."""
    mlflow.set_tracking_uri(tracking_uri())
    client = open_store(tracking_uri(), _workdir())
    parent = os.environ.get("LIMIT_PARENT_RUN_ID")
    study = os.environ.get("LIMIT_STUDY", "adhoc")
    exp_id = client.get_run(parent).info.experiment_id if parent else experiment_id(study)
    mark_dead_runs_killed(client, exp_id, output)
    run_tags = {
        **_child_tags(study, kind, key, tags),
        **execution_tags(),
        **({"limit.output": output} if output else {}),
    }
    with mlflow.start_run(
        experiment_id=exp_id,
        run_name=_child_name(kind, tags),
        parent_run_id=parent,
        tags=run_tags,
        nested=True,
    ):
        yield


def log_reused(parent: str, study: str, kind: str, key: str, tags: dict[str, str], manifest: dict) -> None:
    """A child run for a step whose output was reused, so every execution's parent run is complete."""
    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    experiment_id = client.get_run(parent).info.experiment_id
    run_tags = {**_child_tags(study, kind, key, tags), "mlflow.parentRunId": parent, "limit.reused": "true"}
    run = client.create_run(experiment_id, run_name=_child_name(kind, tags), tags=run_tags)
    summary = manifest.get("summary", {})
    numbers_only = {k: float(v) for k, v in summary.items() if _is_number(v)}
    for name, value in numbers_only.items():
        client.log_metric(run.info.run_id, name, value)
    client.set_terminated(run.info.run_id)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def log_summary(summary: dict[str, Any], prefix: str = "") -> None:
    """Numbers become metrics, short strings become tags."""
    for name, value in summary.items():
        if isinstance(value, bool):
            mlflow.set_tag(f"{prefix}{name}", str(value))
        elif _is_number(value):
            mlflow.log_metric(f"{prefix}{name}", float(value))
        elif isinstance(value, str) and len(value) < 250:
            mlflow.set_tag(f"{prefix}{name}", value)
