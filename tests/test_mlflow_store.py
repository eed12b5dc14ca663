"""MLflow housekeeping on a real local store: one process initialises it, runs of dead executions end KILLED,
and a copied work folder writes its artifacts into itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from conftest import run_env

from limit.execution import tracking
from limit.execution.mlflow_store import execution_tags


def use_folder(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> mlflow.MlflowClient:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    monkeypatch.setenv("LIMIT_WORKDIR", str(workdir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("LIMIT_PARENT_RUN_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri)


def dead_pid() -> int:
    return subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout


def test_runs_of_dead_executions_are_marked_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    client = use_folder(tmp_path / "runs", monkeypatch)
    parent = tracking.start_parent("hygiene", {"limit.backend": "local", **execution_tags()})
    exp = client.get_run(parent).info.experiment_id
    gone = {**execution_tags(), "limit.pid": dead_pid().decode().strip()}
    dead_parent = client.create_run(exp, tags=gone).info.run_id
    dead_child = client.create_run(exp, tags={**gone, "mlflow.parentRunId": dead_parent}).info.run_id
    other_host = client.create_run(exp, tags={**gone, "limit.host": "another-machine"}).info.run_id
    # a step whose lock this execution now holds: its RUNNING run is a dead one, whatever its host
    stale_step = client.create_run(exp, tags={"limit.output": "/a/b/judge/k", "limit.host": "a-pod"}).info.run_id

    tracking.start_parent("hygiene", {"limit.backend": "local", **execution_tags()})
    status = {run_id: client.get_run(run_id).info.status for run_id in (dead_parent, dead_child, other_host)}
    assert status == {dead_parent: "KILLED", dead_child: "KILLED", other_host: "RUNNING"}
    assert client.get_run(parent).info.status == "RUNNING", "this process is alive"

    monkeypatch.setenv("LIMIT_PARENT_RUN_ID", parent)
    with tracking.step_run("judge", "k", {}, output="/a/b/judge/k"):
        assert client.get_run(stale_step).info.status == "KILLED"


def test_a_copied_work_folder_keeps_its_artifacts_to_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    report = tmp_path / "report.md"
    report.write_text("# one\n")
    client = use_folder(tmp_path / "original", monkeypatch)
    first = tracking.start_parent("copied")
    client.log_artifact(first, str(report))
    shutil.copytree(tmp_path / "original", tmp_path / "copy")

    client = use_folder(tmp_path / "copy", monkeypatch)
    second = tracking.start_parent("copied")
    report.write_text("# two\n")
    client.log_artifact(second, str(report))
    for run_id in (first, second):
        assert client.get_run(run_id).info.artifact_uri.startswith((tmp_path / "copy").resolve().as_uri())
    assert len(list((tmp_path / "original").rglob("report.md"))) == 1, "nothing was written into the original"
    assert sorted(p.read_text() for p in (tmp_path / "copy").rglob("report.md")) == ["# one\n", "# two\n"]


def test_a_fresh_store_opened_by_several_processes_at_once(tmp_path: Path):
    """MLflow migrates a fresh database on first use: without the lock, concurrent first uses break each other."""
    code = (
        "import sys; from pathlib import Path; from limit.execution.mlflow_store import open_store; "
        "open_store(sys.argv[1], Path(sys.argv[2])).search_experiments()"
    )
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, uri, str(tmp_path / "runs")], env=run_env(), stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
