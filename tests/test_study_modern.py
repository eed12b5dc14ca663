"""`limit run tiny-modern` end to end on CPU: a tiny Llama and a tiny Qwen2 finetuned packed (sdpa, named in each
finetune's summary), scored and judged against each other; the report and the MLflow summary runs compare the
two families as the tiny MPT study's do."""

from __future__ import annotations

import json

import mlflow
import pytest
from test_study_local import limit_run

pytestmark = pytest.mark.slow


def test_tiny_modern_compares_two_families(tmp_path):
    workdir = tmp_path / "runs"
    result = limit_run("tiny-modern", workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((workdir / "tiny-modern" / "report.json").read_text())
    models = {m["name"]: m for m in report["models"]}
    assert set(models) == {"tiny-llama-lima", "tiny-qwen-lima"}
    assert all(m["kind"] == "run" and m["epoch"] == 1 for m in models.values())
    (pair,) = report["pairs"]
    assert (pair["a"], pair["b"]) == ("tiny-llama-lima", "tiny-qwen-lima")
    logs = sorted((workdir / "artifacts" / "finetune").glob("*/train_log.json"))
    assert [json.loads(p.read_text())["summary"]["attention"] for p in logs] == ["sdpa", "sdpa"]

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    table = mlflow.search_runs(experiment_names=["limit-tiny-modern"], filter_string="tags.`limit.kind` = 'summary'")
    assert sorted(table["tags.limit.run"]) == ["tiny-llama-lima", "tiny-qwen-lima"]
    columns = ["metrics.train.tokens", "metrics.gauntlet.average", "metrics.win_rate.tiny-test.vs.tiny-qwen-lima"]
    llama = table[table["tags.limit.run"] == "tiny-llama-lima"]
    assert not llama[columns].isna().any().any() and float(llama["metrics.train.tokens"].iloc[0]) > 0
