"""`limit parent-run`: the Argo workflow's first task opens the study's MLflow parent run, the exit handler
closes it with the workflow's status."""

from __future__ import annotations

import re

import mlflow

from limit.cli import main as limit_main


def test_start_then_end_with_the_workflow_status(limit_env, tmp_path, monkeypatch) -> None:
    client = mlflow.MlflowClient()
    for n, (argo_status, mlflow_status) in enumerate([("Succeeded", "FINISHED"), ("Failed", "FAILED")]):
        outputs = tmp_path / f"outputs-{n}"
        monkeypatch.setenv("LIMIT_OUTPUTS_DIR", str(outputs))
        workflow = f"limit-tiny-{n}"
        assert limit_main(["parent-run", "start", "--study", "tiny", "--workflow", workflow]) == 0
        run_id = (outputs / "parent_run_id").read_text()

        run = client.get_run(run_id)
        assert run.info.status == "RUNNING"
        assert run.data.tags["limit.workflow"] == workflow
        assert run.data.tags["limit.backend"] == "argo"
        # "<study> <YYYY-mm-dd HH:MM> <short id>": executions told apart in the runs table
        assert re.fullmatch(rf"tiny \d{{4}}-\d\d-\d\d \d\d:\d\d {run_id[:8]}", run.info.run_name)

        assert limit_main(["parent-run", "end", "--run-id", run_id, "--status", argo_status]) == 0
        assert client.get_run(run_id).info.status == mlflow_status
    # a model-training experiment: MLflow 3's UI opens it on its runs, not the GenAI overview
    assert client.get_experiment_by_name("limit-tiny").tags["mlflow.experimentKind"] == "custom_model_development"
