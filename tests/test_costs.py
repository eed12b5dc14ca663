"""The memory and cost planner: `full` fits as shipped and shows its estimates, what cannot fit is refused at
plan time in one line, ZeRO stages are chosen per model, and the tiny finetune's estimate matches its
measured peak."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_env

from limit.costs import KNOWN_SHAPES, Gpu, finetune_memory, generation_memory, scoring_memory
from limit.errors import LimitError
from limit.plan import build_plan
from limit.quantities import parse_quantity
from limit.runner import run_step
from limit.spec.study import TrainSpec, load_study


def limit_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "limit.cli", *args], capture_output=True, text=True, env=run_env())


def test_full_as_shipped_fits_and_prints_its_estimates():
    result = limit_cli("plan", "full")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("  finetune-")]
    assert len(lines) == 8 and all("GiB" in line and "GPU-hours" in line for line in lines)
    assert "8 GPUs, ZeRO-2" in lines[0] and "8 GPUs, ZeRO-3" in lines[-1]
    assert "total: ~" in result.stdout

    costs = json.loads(limit_cli("plan", "full", "--json").stdout)["costs"]
    for cost in costs.values():
        assert cost["memory_gib"] <= cost["budget_gib"] == 80 and cost["gpu_hours"] > 0


def test_zero_stage_is_chosen_per_model():
    plan = build_plan(load_study("full"))
    assert plan.steps["finetune-mpt-7b-lima"].input.train.zero_stage == 2  # fits: no parameter gathering
    assert plan.steps["finetune-mpt-30b-lima"].input.train.zero_stage == 3


def variant(tmp_path: Path, study: str, **models_override) -> Path:
    spec = yaml.safe_load((REPO / "workflows" / "studies" / f"{study}.yaml").read_text())
    for model, override in models_override.items():
        spec["training"]["models"][model.replace("_", "-")] |= override
    path = tmp_path / f"{study}-variant.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_eager_attention_at_8192_is_refused_in_one_line(tmp_path: Path):
    path = variant(tmp_path, "paper-30b", mpt_30b={"attention": "eager"})
    result = limit_cli("plan", str(path))
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert f"{path}: runs.0 (mpt-30b-instruct-v3): the finetune needs ~" in line
    assert "eager attention" in line and "over the 80 GiB per GPU" in line
    assert "change attention (runs.0.train.attention or training.models.mpt-30b)" in line


def test_a_smaller_gpu_refuses_what_an_80_gib_one_takes(tmp_path: Path):
    profile = yaml.safe_load((REPO / "workflows" / "profiles" / "gpu.yaml").read_text()) | {"gpu_memory_gib": 40}
    (tmp_path / "a40.yaml").write_text(yaml.safe_dump(profile))
    result = limit_cli("manifest", "paper-30b", "--profile", str(tmp_path / "a40.yaml"))
    assert result.returncode == 2 and "over the 40 GiB per GPU" in result.stderr


def test_sdpa_and_eager_cost_quadratic_memory_flex_linear():
    shape = KNOWN_SHAPES["mosaicml/mpt-30b"]
    base = TrainSpec(
        gpus=8,
        micro_batch_size=1,
        global_batch_size=72,
        max_seq_len=8192,
        gradient_checkpointing=True,
        optimizer="decoupled_lionw",
    )
    attention = {
        name: finetune_memory(shape, base.model_copy(update={"attention": name}), 3, 8192).terms["attention"]
        for name in ("flex", "sdpa", "eager")
    }
    assert attention["flex"] < 2**30 < 40 * 2**30 < attention["eager"] < attention["sdpa"]
    assert finetune_memory(shape, base, 3, 8192).gib < Gpu().memory_gib < finetune_memory(shape, base, 2, 8192).gib


def test_tiny_finetune_estimate_is_within_2x_of_its_measured_peak(limit_env: Path):
    """In a process of its own, as a pod runs it: a long-lived process (this one) reuses freed heap, and its
    resident set then understates what a step allocates."""
    plan = build_plan(load_study("tiny"))
    run_step("prepare", plan.steps["prepare-lima"].input.model_dump_json())
    finetune = plan.steps["finetune-tiny-lima"]
    argv = [sys.executable, "-m", "limit.cli", "step", "finetune", "--input", finetune.input.model_dump_json()]
    done = subprocess.run(argv, capture_output=True, text=True, env=run_env())
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((limit_env / "artifacts" / finetune.ref / "_manifest.json").read_text())["summary"]
    memory = {k: v for k, v in summary.items() if k.endswith("_gib")}
    for measured in ("memory_peak_gib", "probe_peak_gib"):
        assert 0.5 <= summary[measured] / summary["memory_estimate_gib"] <= 2.0, memory


def test_finetune_pods_get_the_disk_the_planner_estimates():
    """Hub weights plus two training states (one may still be uploading); epochs leave the disk once uploaded."""
    plan = build_plan(load_study("full"))
    gib = {step_id: parse_quantity(plan.steps[step_id].resources.disk) / 2**30 for step_id in plan.costs}
    assert 200 < gib["finetune-mpt-7b-lima"] < 300 and 700 < gib["finetune-mpt-30b-lima"] < 900


def test_a_study_disk_under_the_estimate_is_refused(tmp_path: Path):
    spec = yaml.safe_load((REPO / "workflows" / "studies" / "paper-30b.yaml").read_text())
    spec["resources"]["finetune"]["disk"] = "300Gi"
    (tmp_path / "small-disk.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = limit_cli("plan", str(tmp_path / "small-disk.yaml"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "resources.finetune.disk: 300Gi is less than the ~799 GiB that runs.0 (mpt-30b-instruct-v3)" in result.stderr


def test_gauntlet_and_generate_batches_are_sized_to_one_gpu():
    """30B: packed rows of as many 8192-token documents as fit, and a smaller generation batch; 7B as asked."""
    plan = build_plan(load_study("full"))
    shape, gpu = KNOWN_SHAPES["mosaicml/mpt-30b"], Gpu()
    small, large = plan.steps["gauntlet-mpt-7b"].input.gauntlet, plan.steps["gauntlet-mpt-30b"].input.gauntlet
    assert small.batch_tokens is None and large.batch_tokens % 8192 == 0
    assert scoring_memory(shape, "packed", 1, large.batch_tokens, "auto").gib <= gpu.memory_gib
    assert scoring_memory(shape, "packed", 1, large.batch_tokens + 8192, "auto").gib > gpu.memory_gib
    gen = plan.steps["generate-mpt-30b-lima-lima-test"].input.generation
    assert 1 <= gen.batch_size < 16 == plan.steps["generate-mpt-7b-lima-lima-test"].input.generation.batch_size
    assert (
        generation_memory(shape, gen.batch_size, 2048).gib
        <= gpu.memory_gib
        < generation_memory(shape, gen.batch_size + 1, 2048).gib
    )
    # hf (padded rows, eager) keeps its scores with fewer rows per batch; one 8192-token row of 30B is refused
    study = load_study("paper-7b")
    study = study.model_copy(update={"gauntlet": study.gauntlet.model_copy(update={"backend": "hf"})})
    sized = build_plan(study, gpu=Gpu(memory_gib=40)).steps["gauntlet-mpt-7b"].input.gauntlet.batch_size
    assert 1 <= sized < study.gauntlet.batch_size
    full = load_study("full")
    with pytest.raises(LimitError, match=r"gauntlet-mpt-30b-.*: gauntlet.batch_size: scoring needs ~"):
        build_plan(full.model_copy(update={"gauntlet": full.gauntlet.model_copy(update={"backend": "hf"})}))


def test_gauntlet_and_generation_that_cannot_fit_are_refused_in_one_line(tmp_path: Path):
    spec = yaml.safe_load((REPO / "workflows" / "studies" / "full.yaml").read_text())
    spec["gauntlet"]["batch_tokens"] = 16 * 8192
    (tmp_path / "rows.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = limit_cli("plan", str(tmp_path / "rows.yaml"))
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "gauntlet-mpt-30b-" in line and "gauntlet.batch_tokens: scoring needs ~" in line and "80 GiB GPU" in line

    spec = yaml.safe_load((REPO / "workflows" / "studies" / "full.yaml").read_text())
    spec["generation"]["max_total_tokens"] = 8192
    (tmp_path / "long.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = limit_cli("plan", str(tmp_path / "long.yaml"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "generate-mpt-30b-" in line and "generation.max_total_tokens: one row of 8192 tokens needs ~" in line


def test_a_refused_sweep_run_is_named_by_its_place_in_the_spec(tmp_path: Path):
    """sweep-7b writes 3 runs that expand into 27; the 25th expanded one is the spec's runs.2: the refusal
    names the field as written in the file, not the expanded index."""
    spec = yaml.safe_load((REPO / "workflows" / "studies" / "sweep-7b.yaml").read_text())
    spec["runs"][2]["train"] = {"attention": "eager", "max_seq_len": 8192}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    study = load_study(str(path))
    assert [r.run_name for r in study.runs].index("mpt-7b-lima-s17") == 24
    with pytest.raises(LimitError) as refused:
        build_plan(study, origin=str(path))
    message = str(refused.value)
    assert f"{path}: runs.2 (mpt-7b-lima-s17): the finetune needs" in message
    assert "(runs.2.train.attention or training.models.mpt-7b)" in message and "runs.24" not in message


def test_a_train_spec_is_resolved_once_per_run(monkeypatch):
    """Validation, the step count, the planner and sizing read one resolved TrainSpec per run (sweep-7b: 27)."""
    from limit.spec.study import TrainSpec as Spec

    built = []
    validate = Spec.model_validate.__func__
    monkeypatch.setattr(
        Spec, "model_validate", classmethod(lambda cls, *a, **k: built.append(1) or validate(cls, *a, **k))
    )
    plan = build_plan(load_study("sweep-7b"))
    assert len(plan.by_kind("finetune")) == 27 and len(built) == 27
