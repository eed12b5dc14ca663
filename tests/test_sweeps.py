"""Size sweeps and training-seed replicates: nested subsets, expanded names, seed-matched pairs, steps shared
between studies, and one-line errors naming the field as written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from limit.cli import main as limit_main
from limit.data.datasets import subset
from limit.io import read_jsonl
from limit.locations import FIXTURES
from limit.plan import build_plan
from limit.spec import load_study


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
