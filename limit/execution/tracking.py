"""MLflow: one parent run per study execution, a child run per step, and a summary run per model.

The backend opens the parent run and hands its id to steps through LIMIT_PARENT_RUN_ID; a step's child run
carries tags (study, step kind, model, dataset, epoch, ...) so MLflow's comparison views can group them.

What a step logged (its own run's params, tags and metric histories, the runs it added beside it, such as the
report's summary runs, and the metrics it put on the parent) is stored with its outputs (`RECORD`), so an
execution that reuses the step gets a child run with the same content, tagged with the run that produced it.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param

from limit.execution.mlflow_store import artifact_root, execution_tags, mark_dead_runs_killed, open_store
from limit.execution.settings import settings
from limit.execution.store import step_name

DEFAULT_URI = "sqlite:///runs/mlflow.db"
RECORD = "_tracking.json"  # beside a step's outputs: what its MLflow runs hold
# MLflow 3 opens a GenAI experiment on its traces overview; this kind opens on the runs table.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# What one log_batch call may carry (MLflow's limits).
BATCH = {"metrics": 1000, "params": 100}
# Runs that stand for a model (or a replicate group) of a study: one is current, the latest; the earlier ones
# are kept under "<kind>.superseded", so filtering on the kind shows the current table only.
CURRENT_KINDS = ("summary", "replicates")

# The runs this process's step added beside its own run, and what it logged on the parent run.
_made: dict[str, Any] = {"children": [], "parent_metrics": {}, "parent_files": [], "parent_tables": {}}


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)


def experiment_name(study: str) -> str:
    return f"limit-{study}"


def experiment_id(study: str) -> str:
    """The study's experiment, created on first use, marked as a model-training experiment.

    With a local store (sqlite or a folder) MLflow would put artifacts in ./mlruns of whatever folder the
    process runs in; keep them beside the store in the work folder instead. A tracking server decides itself.
    """
    client = mlflow.MlflowClient()
    existing = client.get_experiment_by_name(experiment_name(study))
    if existing is not None:
        if existing.tags.get("mlflow.experimentKind") is None:  # made before the kind was set
            client.set_experiment_tag(existing.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        return existing.experiment_id
    location = None
    if not tracking_uri().startswith(("http://", "https://", "databricks")):
        location = artifact_root(_workdir())
    try:
        return client.create_experiment(experiment_name(study), artifact_location=location, tags=EXPERIMENT_KIND)
    except mlflow.exceptions.MlflowException:  # created concurrently by another step
        return client.get_experiment_by_name(experiment_name(study)).experiment_id


def compare_link(study: str) -> str | None:
    """The MLflow page comparing the study's current summary runs side by side (the paper's table), or None
    before there are any."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None  # no store yet: looking would make one
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment_name(study))
    if experiment is None:
        return None
    found = client.search_runs([experiment.experiment_id], current_filter(study), max_results=200)
    if not found:
        return None
    ids = ",".join(f'"{run.info.run_id}"' for run in found)
    return _ui(f'#/compare-runs?runs=[{ids}]&experiments=["{experiment.experiment_id}"]')


def current_filter(study: str, kind: str = "summary") -> str:
    """The search filter of a study's current runs of `kind` (see CURRENT_KINDS)."""
    return f"tags.`limit.kind` = '{kind}' and tags.`limit.study` = '{study}'"


def ui_link(study: str) -> str:
    """Where to look at a study's runs. MLflow 3.x's UI opens every experiment on its GenAI overview unless
    told the workflow (`workflowType`; the experiment's kind tag serves the versions that read it)."""
    return _ui(f"#/experiments/{experiment_id(study)}?workflowType=machine_learning")


def _ui(path: str) -> str:
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{path}"
    return f"{_mlflow_ui()} --backend-store-uri {uri}, then http://127.0.0.1:5000/{path}"


def _mlflow_ui() -> str:
    """How to start the UI from here: the `mlflow` beside this Python (a venv's bin/ is seldom on PATH)."""
    beside = Path(sys.executable).with_name("mlflow")
    if not beside.is_file():
        return "mlflow ui"
    with contextlib.suppress(ValueError):
        beside = beside.relative_to(Path.cwd())
    return f"{beside} ui"


def _workdir() -> Path:
    return settings().workdir


def start_parent(study: str, tags: dict[str, str] | None = None) -> str:
    """Create the study execution's parent run, named "<study> <YYYY-mm-dd HH:MM> <short id>", and return its
    id (left open: children attach to it).

    Runs that executions on this machine left RUNNING when they were killed are marked KILLED first."""
    mlflow.set_tracking_uri(tracking_uri())
    client = open_store(tracking_uri(), _workdir())
    exp_id = experiment_id(study)
    mark_dead_runs_killed(client, exp_id)
    run = client.create_run(exp_id, tags={"limit.study": study, **(tags or {})})
    run_id = run.info.run_id
    client.update_run(run_id, name=f"{study} {time.strftime('%Y-%m-%d %H:%M')} {run_id[:8]}")
    return run_id


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


@contextlib.contextmanager
def step_run(kind: str, key: str, tags: dict[str, str], output: str | None = None) -> Iterator[None]:
    """The step's child run (under LIMIT_PARENT_RUN_ID when set), active while the step runs; KILLED when the
    step is interrupted (SIGINT, or SIGTERM turned into KeyboardInterrupt by the runner).

    `output`: where the step writes, whose lock the caller holds: a RUNNING run of it is of a dead execution."""
    mlflow.set_tracking_uri(tracking_uri())
    client = open_store(tracking_uri(), _workdir())
    parent, study = settings().parent_run_id, settings().study
    exp_id = client.get_run(parent).info.experiment_id if parent else experiment_id(study)
    mark_dead_runs_killed(client, exp_id, output)
    _made.update(children=[], parent_metrics={}, parent_files=[], parent_tables={})
    run_tags = {
        **_child_tags(study, kind, key, tags),
        **execution_tags(),
        **({"limit.output": output} if output else {}),
    }
    with mlflow.start_run(
        experiment_id=exp_id,
        run_name=step_name(kind, tags),
        parent_run_id=parent,
        tags=run_tags,
        nested=True,
    ):
        try:
            yield
        except KeyboardInterrupt:
            mlflow.end_run("KILLED")
            raise


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def log_summary(summary: dict[str, Any], prefix: str = "") -> None:
    """Numbers become metrics, short strings become tags; a metric the step logged itself (at its own step,
    e.g. select's chosen epoch) is left as it is."""
    mlflow.flush_async_logging()
    logged = set(mlflow.get_run(mlflow.active_run().info.run_id).data.metrics)
    for name, value in summary.items():
        if isinstance(value, bool):
            mlflow.set_tag(f"{prefix}{name}", str(value))
        elif f"{prefix}{name}" in logged:
            continue
        elif _is_number(value):
            mlflow.log_metric(f"{prefix}{name}", float(value))
        elif isinstance(value, str) and len(value) < 250:
            mlflow.set_tag(f"{prefix}{name}", value)


# ---------------------------------------------------------------- what a step adds beside its own run


def log_child(
    name: str,
    tags: dict[str, str],
    metrics: dict[str, float],
    curves: dict[str, list[tuple[int, float]]],
    params: dict[str, str] | None = None,
) -> str:
    """A run beside the step's own, under the execution's parent (else under the step's run): the report's
    summary run of one model. `curves`: metric histories, {key: [(step, value)]}."""
    client = mlflow.MlflowClient()
    step_run_id = mlflow.active_run().info.run_id
    parent = settings().parent_run_id or step_run_id
    experiment = client.get_run(step_run_id).info.experiment_id
    _supersede(client, experiment, tags)
    run = client.create_run(experiment, run_name=name, tags={**tags, "mlflow.parentRunId": parent})
    now = int(time.time() * 1000)
    points = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    points += [Metric(k, float(v), now, int(step)) for k, history in curves.items() for step, v in history]
    _log_batches(client, run.info.run_id, points, [Param(k, str(v)) for k, v in (params or {}).items()])
    client.set_terminated(run.info.run_id)
    _made["children"].append(run.info.run_id)
    return run.info.run_id


def log_on_parent(
    metrics: dict[str, float],
    folder: Path | None = None,
    files: tuple[str, ...] = (),
    tables: dict[str, dict[str, list]] | None = None,
) -> None:
    """Headline metrics, files and tables ({name: {column: values}}, as `tables/<name>.json`) on the execution's
    parent run (nothing when the step runs on its own)."""
    parent = settings().parent_run_id
    if parent:
        _to_parent(parent, metrics, folder, files, tables or {})
    _made["parent_metrics"].update(metrics)
    _made["parent_tables"].update(tables or {})
    _made["parent_files"] = sorted(set(_made["parent_files"]) | set(files))


def _to_parent(parent: str, metrics: dict[str, float], folder: Path | None, files, tables: dict) -> None:
    client = mlflow.MlflowClient()
    for name in files:
        if folder is not None and (folder / name).is_file():
            client.log_artifact(parent, str(folder / name))
    for name, table in tables.items():
        client.log_table(parent, table, f"tables/{name}.json")
    now = int(time.time() * 1000)
    _log_batches(client, parent, [Metric(k, float(v), now, 0) for k, v in metrics.items()])


def _log_batches(client, run_id: str, metrics: list[Metric], params: Sequence[Param] = ()) -> None:
    for items, size, field in ((metrics, BATCH["metrics"], "metrics"), (params, BATCH["params"], "params")):
        for start in range(0, len(items), size):
            client.log_batch(run_id, **{field: list(items[start : start + size])})


# ---------------------------------------------------------------- a step's record, and its replay


def _snapshot(client, run_id: str) -> dict:
    run = client.get_run(run_id)
    histories = {key: client.get_metric_history(run_id, key) for key in run.data.metrics}
    return {
        "run_id": run_id,
        "name": run.info.run_name,
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        "params": dict(run.data.params),
        "metrics": {k: [[m.step, m.value, m.timestamp] for m in h] for k, h in histories.items()},
    }


def record() -> dict:
    """What the active step logged: its run, the runs it added and its parent metrics (stored as RECORD)."""
    mlflow.flush_async_logging()  # Trainer logs asynchronously
    client = mlflow.MlflowClient()
    return {
        "step": _snapshot(client, mlflow.active_run().info.run_id),
        "children": [_snapshot(client, run_id) for run_id in _made["children"]],
        "parent_metrics": dict(_made["parent_metrics"]),
        "parent_files": list(_made["parent_files"]),
        "parent_tables": dict(_made["parent_tables"]),
    }


def log_reused(
    parent: str,
    study: str,
    kind: str,
    key: str,
    tags: dict[str, str],
    manifest: dict,
    saved: dict | None,
    fetch: Callable[[], Path] | None = None,
) -> None:
    """A child run for a step whose output was reused, with what its producing run held (`saved`, the step's
    RECORD; steps stored before records existed give their manifest's summary), so every execution's parent
    run is complete. `fetch` gives the step's output folder, for the files it put on the parent run."""
    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    experiment = client.get_run(parent).info.experiment_id
    own = {**_child_tags(study, kind, key, tags), "mlflow.parentRunId": parent, "limit.reused": "true"}
    if saved is None:
        summary = manifest.get("summary", {})
        saved = {"step": {"metrics": {k: [[0, float(v), 0]] for k, v in summary.items() if _is_number(v)}}}
    step = saved["step"]
    _replay(client, experiment, step_name(kind, tags), step, own)
    for child in saved.get("children", []):
        _replay(client, experiment, child["name"], child, {"mlflow.parentRunId": parent, "limit.reused": "true"})
    if saved.get("parent_metrics") or saved.get("parent_files") or saved.get("parent_tables"):
        folder = fetch() if fetch and saved.get("parent_files") else None
        files, tables = saved.get("parent_files", []), saved.get("parent_tables", {})
        _to_parent(parent, saved.get("parent_metrics", {}), folder, files, tables)


def _replay(client, experiment: str, name: str, saved: dict, tags: dict[str, str]) -> None:
    origin = {"limit.reused_from": saved["run_id"]} if saved.get("run_id") else {}
    run_tags = {**saved.get("tags", {}), **tags, **origin}
    _supersede(client, experiment, run_tags)
    run = client.create_run(experiment, run_name=name, tags=run_tags)
    now = int(time.time() * 1000)
    metrics = [
        Metric(key, float(value), int(ts or now), int(step))
        for key, points in saved.get("metrics", {}).items()
        for step, value, ts in points
    ]
    params = [Param(k, str(v)) for k, v in saved.get("params", {}).items()]
    _log_batches(client, run.info.run_id, metrics, params)
    client.set_terminated(run.info.run_id)


def _supersede(client, experiment: str, tags: dict[str, str]) -> None:
    """Before a run of CURRENT_KINDS is made: the earlier ones of the same model and study are superseded."""
    kind = tags.get("limit.kind")
    if kind not in CURRENT_KINDS or "limit.run" not in tags:
        return
    if "'" in tags["limit.run"] + tags.get("limit.study", ""):  # no quoting in MLflow's filter: left current
        return
    query = f"{current_filter(tags.get('limit.study', ''), kind)} and tags.`limit.run` = '{tags['limit.run']}'"
    for run in client.search_runs([experiment], query, max_results=1000):
        client.set_tag(run.info.run_id, "limit.kind", f"{kind}.superseded")


def load_record(text: str | None) -> dict | None:
    """A stored RECORD, or None when the step has none (stored before records existed) or it is unreadable."""
    if not text:
        return None
    try:
        saved = json.loads(text)
    except json.JSONDecodeError:
        return None
    return saved if isinstance(saved, dict) and "step" in saved else None
