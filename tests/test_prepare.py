"""The prepare step through the runner on the tiny study: source, seeded subset and mix, with stats."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from limit.errors import LimitError
from limit.execution.io import read_jsonl
from limit.execution.store import MANIFEST
from limit.plan import build_plan
from limit.runner import run_step
from limit.spec.study import load_study
from limit.steps.inputs import PrepareInput, SubsetOf


def test_tiny_datasets_prepare_into_rows_stats_and_manifests(limit_env: Path):
    plan = build_plan(load_study("tiny"))
    names = ["prepare-lima", "prepare-instruct-v1", "prepare-instruct-v1-24", "prepare-instruct-v1-24-plus-lima"]
    summaries = {name: run_step("prepare", plan.steps[name].input.model_dump_json()) for name in names}
    out = {name: limit_env / "artifacts" / plan.steps[name].ref for name in names}
    rows = {name: read_jsonl(out[name] / "data.jsonl") for name in names}

    assert [len(rows[n]) for n in names] == [37, 48, 24, 61]
    for name in names:
        stats = json.loads((out[name] / "stats.json").read_text())
        assert (out[name] / MANIFEST).is_file()
        assert stats["sha256"] == hashlib.sha256((out[name] / "data.jsonl").read_bytes()).hexdigest()
        assert summaries[name]["sha256"] == stats["sha256"] and summaries[name]["rows"] == stats["rows"]
        tokens = stats["tokens"]
        assert tokens["tokenizer"] == "tiny" and 0 < tokens["prompt"]["mean"] <= tokens["prompt"]["max"]
        assert tokens["total"]["over"]["512"] == 0

    full, sub = rows["prepare-instruct-v1"], rows["prepare-instruct-v1-24"]
    assert all(row in full for row in sub)  # a subset of the source, in source order
    assert [full.index(row) for row in sub] == sorted(full.index(row) for row in sub)
    assert rows["prepare-instruct-v1-24-plus-lima"] == sub + rows["prepare-lima"]  # mix: spec order


def test_subset_larger_than_a_prepared_dataset_fails_without_a_manifest(limit_env: Path):
    plan = build_plan(load_study("tiny"))
    lima = plan.steps["prepare-lima"]
    run_step("prepare", lima.input.model_dump_json())
    too_big = PrepareInput(subset=SubsetOf(of=lima.ref, sample=38, seed=1), tags={"dataset": "lima-38"})

    with pytest.raises(LimitError, match="dataset lima-38: subset.sample: 38 rows asked, it has 37"):
        run_step("prepare", too_big.model_dump_json())
    manifests = list((limit_env / "artifacts" / "prepare").glob(f"*/{MANIFEST}"))
    assert manifests == [limit_env / "artifacts" / lima.ref / MANIFEST]  # the failed subset left none


def test_an_unreachable_hub_is_retryable_not_bad_input(limit_env, capsys):
    """The real hub loading path, which cannot reach the hub here: exit 75 (Argo retries it), not 2."""
    from limit.cli import main
    from limit.plan import build_plan
    from limit.spec.study import load_study

    step = build_plan(load_study("full")).steps["prepare-instruct-v1"]
    assert main(step.argv[1:]) == 75
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("limit: unavailable (worth retrying): dataset mosaicml/dolly_hhrlhf")
    assert not list((limit_env / "artifacts").rglob("_manifest.json"))
