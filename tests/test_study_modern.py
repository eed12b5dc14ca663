"""`limit run tiny-modern` end to end on CPU, under the chat template: a tiny Llama and a tiny Qwen2 finetuned
packed (sdpa, named in each finetune's summary) and the tiny Llama with LoRA too, scored and judged: the report
and the MLflow summary runs compare the two families, and LoRA with the full finetune of the same base, as the
tiny MPT study's do."""

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
    assert set(models) == {"tiny-llama-lima", "tiny-qwen-lima", "tiny-llama-lima-lora"}
    assert all(m["kind"] == "run" and m["epoch"] == 1 for m in models.values())
    pairs = {(p["a"], p["b"]) for p in report["pairs"]}
    assert pairs == {("tiny-llama-lima", "tiny-qwen-lima"), ("tiny-llama-lima-lora", "tiny-llama-lima")}
    assert all(p["status"] == "ready" and p["win_rate_a"] is not None for p in report["pairs"])
    summaries = [
        json.loads(p.read_text())["summary"] for p in (workdir / "artifacts" / "finetune").glob("*/train_log.json")
    ]
    assert [s["attention"] for s in summaries] == ["sdpa"] * 3
    methods = {s["method"]: s["trainable_params"] for s in summaries if s["method"] == "lora"} | {
        "full": min(s["trainable_params"] for s in summaries if s["method"] == "full")
    }
    assert methods["lora"] < methods["full"] / 5  # only the adapters train

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    table = mlflow.search_runs(experiment_names=["limit-tiny-modern"], filter_string="tags.`limit.kind` = 'summary'")
    assert sorted(table["tags.limit.run"]) == ["tiny-llama-lima", "tiny-llama-lima-lora", "tiny-qwen-lima"]
    assert dict(zip(table["tags.limit.run"], table["params.method"], strict=True))["tiny-llama-lima-lora"] == "lora"
    columns = ["metrics.train.tokens", "metrics.gauntlet.average", "metrics.judge.win_rate.tiny-test.vs.tiny-qwen-lima"]
    llama = table[table["tags.limit.run"] == "tiny-llama-lima"]
    assert not llama[columns].isna().any().any() and float(llama["metrics.train.tokens"].iloc[0]) > 0
