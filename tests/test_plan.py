"""Plans: keys are content hashes of inputs; the DAG wires each step to what it reads."""

from __future__ import annotations

import json

from limit.plan import build_plan
from limit.spec.study import load_study
from limit.steps import KINDS, step_argv, step_key
from limit.steps.inputs import FinetuneInput


def _finetune_input(**train) -> FinetuneInput:
    study = load_study("full")
    run = study.run("mpt-7b-lima")
    spec = study.train_spec(run).model_copy(update=train)
    return FinetuneInput(model=study.models["mpt-7b"], data="prepare/abc", train=spec, tags={"run": "x"})


def test_same_input_same_key_and_any_change_a_new_key():
    base = _finetune_input()
    assert step_key("finetune", base) == step_key("finetune", _finetune_input())
    assert step_key("finetune", base) != step_key("finetune", _finetune_input(lr=1e-5))
    assert step_key("finetune", base) != step_key("finetune", _finetune_input(seed=18))
    assert step_key("finetune", base) != step_key("finetune", base.model_copy(update={"data": "prepare/abd"}))
    assert step_key("finetune", base) != step_key("gauntlet", base)


def test_tags_are_not_hashed():
    base = _finetune_input()
    renamed = base.model_copy(update={"tags": {"run": "another-name"}})
    assert step_key("finetune", base) == step_key("finetune", renamed)


def test_argv_round_trips_to_the_same_key():
    inp = _finetune_input()
    argv = step_argv("finetune", inp)
    assert argv[:6] == ["limit", "step", "finetune", "--key", step_key("finetune", inp), "--input"]
    again = FinetuneInput.model_validate_json(argv[6])
    assert step_key("finetune", again) == step_key("finetune", inp)
    assert '"lr":5e-6' in argv[6] and '"epochs":10' in argv[6], "hyperparameters are explicit, defaults included"


def test_a_step_refuses_a_key_its_code_does_not_compute(limit_env):
    from limit.cli import main

    argv = step_argv("finetune", _finetune_input())
    argv[4] = "0" * 20
    assert main(argv[1:]) == 2
    assert not (limit_env / "artifacts").exists()


def test_upstream_change_changes_every_downstream_key():
    study = load_study("paper-7b")
    plan = build_plan(study)
    other = build_plan(
        study.model_copy(
            update={
                "datasets": {
                    **study.datasets,
                    "instruct-v1-5k": study.datasets["instruct-v1-5k"].model_copy(
                        update={"source": study.datasets["instruct-v1-5k"].source.model_copy(update={"split": "x"})}
                    ),
                }
            }
        )
    )
    changed = {s.id for s in plan.order() if s.key != other.steps[s.id].key}
    assert "prepare-instruct-v1" not in changed and "finetune-mpt-7b-lima" not in changed
    for step_id in (
        "prepare-instruct-v1-5k",
        "prepare-instruct-v1-5k-plus-lima",
        "finetune-mpt-7b-instruct-v1-5k",
        "select-mpt-7b-instruct-v1-5k",
        "generate-mpt-7b-instruct-v1-5k-lima-test",
        "report",
    ):
        assert step_id in changed


def test_full_plan_shape():
    plan = build_plan(load_study("full"))
    steps = plan.steps
    finetunes = plan.by_kind("finetune")
    assert len(finetunes) == 8 and all(s.resources.gpus == 8 for s in finetunes)
    assert len(plan.by_kind("gauntlet")) == 8 * 5 + 2  # every second epoch, as the authors did
    assert len(plan.by_kind("select")) == 8 and len(plan.by_kind("judge")) == 12
    # shared work: LIMA is prepared once for both model sizes, generations once per (model, prompt set)
    assert len(plan.by_kind("prepare")) == 7
    assert len(plan.by_kind("generate")) == 16
    for step in plan.order():
        assert all(dep in steps for dep in step.deps)
        ids = list(steps)
        assert all(ids.index(dep) < ids.index(step.id) for dep in step.deps), "order is topological"
        for ref in _refs(step.input.model_dump()):
            assert any(steps[d].ref == ref for d in step.deps), f"{step.id} reads {ref} without depending on it"
    report = steps["report"]
    assert {d.split("-")[0] for d in report.deps} == {"select", "judge", "gauntlet"}


def _refs(value):
    if isinstance(value, str) and value.split("/")[0] in KINDS and "/" in value:
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def test_plan_json_lists_argv_per_step():
    data = build_plan(load_study("full")).to_json()
    assert data["study"] == "full"
    assert all(s["argv"][:3] == ["limit", "step", s["kind"]] for s in data["steps"])
    json.dumps(data)


def test_local_gauntlet_data_is_content_addressed(tmp_path):
    import shutil

    from limit.execution.locations import FIXTURES

    data = tmp_path / "gauntlet"
    shutil.copytree(FIXTURES / "gauntlet", data)
    study = load_study("tiny")
    study = study.model_copy(update={"gauntlet": study.gauntlet.model_copy(update={"data": str(data)})})
    before = build_plan(study).steps["gauntlet-tiny-mpt"].key
    first = sorted(data.rglob("*.jsonl"))[0]
    first.write_text(first.read_text() + first.read_text().splitlines()[0] + "\n")
    assert build_plan(study).steps["gauntlet-tiny-mpt"].key != before


def test_local_gauntlet_data_missing_a_suite_file_fails_at_plan_time(tmp_path):
    """Every epoch's average would be incomplete, so select could not choose: said before any finetune."""
    import shutil

    import pytest

    from limit.errors import LimitError
    from limit.execution.locations import FIXTURES

    data = tmp_path / "gauntlet"
    shutil.copytree(FIXTURES / "gauntlet", data)
    victim = sorted(data.rglob("*.jsonl"))[0]
    victim.unlink()
    study = load_study("tiny")
    study = study.model_copy(update={"gauntlet": study.gauntlet.model_copy(update={"data": str(data)})})
    with pytest.raises(LimitError, match=r"tiny.yaml: gauntlet.data: 1 of the suite's \d+ files are not in"):
        build_plan(study, origin="tiny.yaml")


def test_every_step_kind_is_one_registry_entry_with_a_module(tmp_path):
    """The planner, the runner and `limit step` read the same registry; each kind's function exists."""
    import argparse

    from limit.commands import step as step_command

    study = load_study("tiny")
    judge = study.judge.model_copy(update={"calibrate": 4, "calibration_release": str(tmp_path)})
    plan_kinds = {step.kind for step in build_plan(study.model_copy(update={"judge": judge})).order()}
    assert plan_kinds == set(KINDS)
    for kind, entry in KINDS.items():
        assert callable(entry.load()), kind
        assert entry.function.startswith(f"limit.steps.{kind}:")
    parser = argparse.ArgumentParser()
    step_command.add_arguments(parser)
    assert all(kind in parser.format_help() for kind in KINDS)


def test_select_limit_scores_epochs_on_a_few_rows_and_the_chosen_one_on_all():
    study = load_study("tiny")
    study = study.model_copy(update={"gauntlet": study.gauntlet.model_copy(update={"select_limit": 2})})
    plan = build_plan(study)
    epochs = [s for s in plan.by_kind("gauntlet") if s.input.epoch is not None]
    assert epochs and all(s.input.gauntlet.limit == 2 for s in epochs)
    chosen = plan.steps["gauntlet-tiny-lima-chosen"]
    select = plan.steps["select-tiny-lima"]
    assert chosen.input.selection == select.ref and chosen.deps == (select.id,)
    assert chosen.input.gauntlet.limit is None and plan.steps["gauntlet-tiny-mpt"].input.gauntlet.limit is None
    assert chosen.id in plan.steps["report"].deps
    assert next(m for m in plan.steps["report"].input.models if m.name == "tiny-lima").gauntlet == chosen.ref


def test_cpu_processes_plan_the_deepspeed_path_without_gpus(tmp_path):
    import yaml

    from limit.spec.study import STUDIES_DIR

    data = yaml.safe_load((STUDIES_DIR / "tiny.yaml").read_text())
    data["training"]["defaults"]["cpu_processes"] = 2
    path = tmp_path / "ranks.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    step = build_plan(load_study(str(path))).steps["finetune-tiny-lima"]
    plain = build_plan(load_study("tiny")).steps["finetune-tiny-lima"]
    assert step.resources.gpus == 0 and step.input.train.zero_stage == 2  # auto: no GPU memory to fit
    assert step.input.train.ranks == 2 and step.input.train.accumulation == 1
    assert '"cpu_processes":2' in step.argv[-1] and step.key != plain.key
    assert "cpu_processes" not in plain.argv[-1]  # every other finetune keeps its input, hence its key
