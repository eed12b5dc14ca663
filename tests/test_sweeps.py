"""Size sweeps and training-seed replicates: nested subsets, expanded names, seed-matched pairs, steps shared
between studies, and one-line errors naming the field as written."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from conftest import REPO, run_env

from limit.cli import main as limit_main
from limit.data.datasets import subset
from limit.execution.io import read_jsonl
from limit.execution.locations import FIXTURES
from limit.gauntlet.benchmarks import CATEGORY_TITLES
from limit.plan import build_plan
from limit.spec.study import load_study


def sweep_tiny() -> dict:
    return yaml.safe_load((REPO / "workflows" / "studies" / "sweep-tiny.yaml").read_text())


def write(tmp_path: Path, spec: dict, name: str = "variant") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def test_smaller_subsets_lie_inside_larger_ones_in_source_order():
    rows = read_jsonl(FIXTURES / "tiny" / "dolly_hhrlhf.jsonl")
    drawn = {n: subset(rows, n, seed=17, label="instruct-v1") for n in (8, 16, 24)}
    position = {id(row): i for i, row in enumerate(rows)}
    for small, large in ((8, 16), (16, 24)):
        assert all(row in drawn[large] for row in drawn[small])
    assert all(
        [position[id(r)] for r in chosen] == sorted(position[id(r)] for r in chosen) for chosen in drawn.values()
    )
    assert subset(rows, 8, seed=18, label="x") != drawn[8]  # another seed, another draw


def test_sweep_tiny_expands_sizes_seeds_and_patterns():
    study = load_study("sweep-tiny")
    assert {"instruct-v1-8", "instruct-v1-16", "instruct-v1-24"} <= set(study.datasets)
    assert "instruct-v1-sizes" not in study.datasets
    names = [run.run_name for run in study.runs]
    assert names == [f"tiny-v1-{n}-s{s}" for n in (8, 16, 24) for s in (17, 18)]
    assert [study.train_spec(run).seed for run in study.runs] == [17, 18] * 3
    assert [(p.a, p.b) for p in study.pairs] == [(name, "tiny-mpt") for name in names]


def test_replicated_runs_are_paired_seed_by_seed(tmp_path: Path):
    spec = sweep_tiny()
    spec["runs"].append({"name": "mix", "model": "tiny-mpt", "dataset": "instruct-v1-24", "seeds": [17, 18]})
    spec["pairs"] = [{"a": "mix", "b": "tiny-v1-24", "prompts": "tiny-test"}]
    study = load_study(write(tmp_path, spec))
    assert [(p.a, p.b) for p in study.pairs] == [("mix-s17", "tiny-v1-24-s17"), ("mix-s18", "tiny-v1-24-s18")]


def test_a_smaller_sweep_reuses_every_step_it_shares(tmp_path: Path):
    """Content-addressed: a 2-size study plans no step that the 3-size one does not already have."""
    spec = sweep_tiny()
    spec["datasets"]["instruct-v1-sizes"]["subset"]["sample"] = [8, 16]
    smaller = build_plan(load_study(write(tmp_path, spec)))
    larger = build_plan(load_study("sweep-tiny"))
    keys = {step.key for step in larger.order()}
    shared = [step for step in smaller.order() if step.kind != "report"]
    assert shared and all(step.key in keys for step in shared)


def test_a_mix_of_a_sweep_expands_per_size():
    study = load_study("sweep-7b")
    assert study.datasets["instruct-v1-5k+lima"].mix == ["instruct-v1-5k", "lima"]
    assert study.datasets["instruct-v1-5k"].subset.sample == 5000
    assert len(study.runs) == 27 and len(study.pairs) == 12


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        (lambda s: s["pairs"][0].update(a="nothing-*"), "pairs.0.a", "'nothing-*' names no run or baseline"),
        (lambda s: s["datasets"]["instruct-v1-sizes"]["subset"].update(sample=[8, 8]), "subset.sample", "distinct"),
        (
            lambda s: s["datasets"].update(again={"subset": {"of": "instruct-v1-sizes", "sample": 4}}),
            "datasets.again.subset.of",
            "is a size sweep",
        ),
        (
            lambda s: s["datasets"].update(both={"mix": ["instruct-v1-sizes", "instruct-v1-sizes"]}),
            "datasets.both.mix",
            "one size sweep at most",
        ),
    ],
)
def test_sweep_mistakes_are_one_line_naming_the_field(tmp_path: Path, capsys, edit, field: str, message: str):
    spec = sweep_tiny()
    edit(spec)
    path = write(tmp_path, spec)
    assert limit_main(["plan", path]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{path}:" in err and field in err and message in err


def test_another_sweep_study_reuses_every_step_it_shares(tmp_path: Path):
    """A study of another name that adds a size and a seed plans every step of sweep-tiny (the report aside)
    with the same key: an execution of it reuses all of them."""
    spec = sweep_tiny()
    spec["name"] = "sweep-tiny-wider"
    spec["datasets"]["instruct-v1-sizes"]["subset"]["sample"] = [8, 16, 24, 32]
    spec["runs"][0]["seeds"] = [17, 18, 19]
    wider = {step.id: step.key for step in build_plan(load_study(write(tmp_path, spec))).order()}
    shared = [step for step in build_plan(load_study("sweep-tiny")).order() if step.kind != "report"]
    assert len(shared) > 30 and all(wider.get(step.id) == step.key for step in shared)
    assert len(wider) > len(shared) + 10


def test_the_report_knows_each_runs_size_replicate_group_and_seed():
    models = {m.name: m for m in build_plan(load_study("sweep-tiny")).steps["report"].input.models}
    assert (models["tiny-v1-16-s18"].rows, models["tiny-v1-16-s18"].group) == (16, "tiny-v1-16")
    assert (models["tiny-v1-16-s18"].series, models["tiny-v1-16-s18"].seed) == ("tiny-v1", 18)
    assert (models["tiny-mpt"].group, models["tiny-mpt"].seed) == (None, None)
    plain = {m.name: m for m in build_plan(load_study("tiny")).steps["report"].input.models}
    assert plain["tiny-lima"].series is None and plain["tiny-lima"].seed is None


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory) -> Path:
    """`limit run sweep-tiny` once on a fresh work folder: 3 sizes x 2 seeds, each judged against the base."""
    workdir = tmp_path_factory.mktemp("sweep") / "runs"
    env = run_env(MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'mlflow.db'}")
    for name in ("LIMIT_ARTIFACTS", "LIMIT_PARENT_RUN_ID"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "limit.cli", "run", "sweep-tiny", "--workdir", str(workdir)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workdir


@pytest.mark.slow
def test_sweep_tiny_reports_curves_replicates_and_paired_intervals(sweep_run: Path):
    report = json.loads((sweep_run / "sweep-tiny" / "report.json").read_text())
    groups = {g["group"]: g for g in report["replicates"]}
    assert set(groups) == {"tiny-v1-8", "tiny-v1-16", "tiny-v1-24"}
    for size, group in zip((8, 16, 24), groups.values(), strict=True):
        assert (group["rows"], group["series"], group["seeds"]) == (size, "tiny-v1", [17, 18])
        assert group["chosen_epochs"] == [2, 2] and group["average"]["n"] == 2
        assert group["average"]["std"] is not None and set(group["categories"]) == set(CATEGORY_TITLES)
        (rate,) = group["win_rates"]
        assert (rate["opponent"], rate["side"], rate["n"]) == ("tiny-mpt", "a", 2)
    gauntlet = report["comparisons"]["gauntlet"]
    assert [c["why"] for c in gauntlet].count("base model") == 6 and [c["why"] for c in gauntlet].count(
        "next size"
    ) == 4
    for entry in gauntlet:
        low, high = entry["ci95"]
        assert low <= entry["difference"] <= high and entry["distinguishable"] == (low > 0 or high < 0)
    rates = report["comparisons"]["win_rate"]
    assert [c["why"] for c in rates].count("even match") == 6 and [c["why"] for c in rates].count("next size") == 4
    assert all(c["ci95"] is not None for c in rates)
    markdown = (sweep_run / "sweep-tiny" / "report.md").read_text()
    for heading in ("Epoch selection", "Selection split", "Replicates", "Paired comparisons", "Contamination"):
        assert f"## {heading}" in markdown
    checked = {row["name"]: row["contamination"] for row in report["models"] if row["kind"] == "run"}
    assert len(checked) == 6 and all(found is not None for found in checked.values())
    assert all(c["p_holm"] >= c["p_value"] and c["family"] == 6 for c in rates if c["why"] == "even match")
    (agreement,) = report["agreement"]  # every run judged against the base: one star around it
    assert agreement["common_opponent"] == "tiny-mpt" and len(agreement["models"]) == 7
    assert "## Do the paradigms agree?" in markdown and "### tiny-mpt on tiny-test" in markdown
    assert all(row["split"]["held_out_rank"] >= 1 for row in report["models"] if row["kind"] == "run")
    assert "| tiny-v1-8-s17 | 2 |" in markdown and "only one epoch scored" in markdown
    assert (sweep_run / "sweep-tiny" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_sweep_tiny_export_has_a_row_per_model_and_per_replicate_group(sweep_run: Path):
    out = sweep_run / "table.csv"
    argv = [sys.executable, "-m", "limit.cli", "export", "sweep-tiny", "--workdir", str(sweep_run), "--csv", str(out)]
    env = run_env(MLFLOW_TRACKING_URI=f"sqlite:///{sweep_run / 'mlflow.db'}")
    env.pop("LIMIT_ARTIFACTS", None)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and "7 models, 3 replicate groups" in done.stdout, done.stdout + done.stderr
    rows = {row["model"]: row for row in csv.DictReader(out.open())}
    assert rows["tiny-v1-16"]["kind"] == "replicates" and rows["tiny-v1-16-s17"]["kind"] == "run"
    assert rows["tiny-v1-16"]["select.chosen_epoch.s18"] == "2" and rows["tiny-v1-16"]["train.rows"] == "16"
    report = json.loads((sweep_run / "sweep-tiny" / "report.json").read_text())
    group = next(g for g in report["replicates"] if g["group"] == "tiny-v1-16")
    assert float(rows["tiny-v1-16"]["gauntlet.average.std"]) == pytest.approx(group["average"]["std"])


@pytest.mark.slow
def test_sweep_tiny_replicate_groups_and_comparisons_are_in_mlflow(sweep_run: Path):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{sweep_run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("limit-sweep-tiny")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    groups = {r.data.tags["limit.run"]: r.data for r in runs if r.data.tags.get("limit.kind") == "replicates"}
    assert set(groups) == {"tiny-v1-8", "tiny-v1-16", "tiny-v1-24"}
    for group in groups.values():
        assert {"gauntlet.average", "gauntlet.average.std", "replicates", "train.rows"} <= set(group.metrics)
        assert group.metrics["select.chosen_epoch.s17"] == 2 and group.tags["limit.series"] == "tiny-v1"
    summary = next(
        r.data
        for r in runs
        if r.data.tags.get("limit.run") == "tiny-v1-16-s17" and r.info.run_name.startswith("summary")
    )
    assert summary.metrics["train.rows"] == 16 and summary.metrics["train.seed"] == 17
    for key in ("paired.gauntlet_average.tiny-mpt", "paired.gauntlet_average.tiny-v1-8-s17"):
        assert {f"{key}.{k}" for k in ("difference", "ci95_low", "ci95_high", "distinguishable")} <= set(
            summary.metrics
        )
    assert "paired.win_rate.tiny-v1-8-s17.tiny-test.difference" in summary.metrics
