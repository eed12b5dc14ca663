"""select: best epoch by gauntlet average, ties to the earliest, curves and choice in MLflow."""

from __future__ import annotations

import json

import mlflow
import pytest

from limit.errors import LimitError
from limit.execution.outputs import ScoredEpoch
from limit.execution.store import Store
from limit.gauntlet.benchmarks import CATEGORIES
from limit.runner import run_step
from limit.steps.inputs import EpochScore, SelectInput
from limit.steps.select import best_epoch


def _epochs(*averages: tuple[int, float | None]) -> list[ScoredEpoch]:
    return [ScoredEpoch(epoch=epoch, average=average) for epoch, average in averages]


def test_best_epoch_prefers_highest_then_earliest():
    assert best_epoch(_epochs((3, 0.3), (1, 0.1), (2, 0.3))).epoch == 2
    assert best_epoch(_epochs((1, None), (2, -0.2))).epoch == 2
    with pytest.raises(LimitError, match="no epoch has a complete gauntlet average"):
        best_epoch(_epochs((1, None)))


def _completed_gauntlet(store: Store, key: str, average: float) -> str:
    ref = f"gauntlet/{key}"
    out = store.begin(ref)
    categories = {c: average for c in CATEGORIES}
    (out / "scores.json").write_text(json.dumps({"average": average, "categories": categories, "complete": True}))
    store.commit(ref, out, {"kind": "gauntlet", "key": key, "summary": {}})
    return ref


def test_select_step_writes_choice_and_curves(limit_env):
    store = Store.open()
    averages = {1: 0.1, 2: 0.3, 3: 0.3}
    refs = {e: _completed_gauntlet(store, f"fake-e{e}", a) for e, a in averages.items()}
    inp = SelectInput(
        finetune="finetune/abc",
        epochs=[EpochScore(epoch=e, gauntlet=r) for e, r in refs.items()],
        tags={"run": "r1"},
    )
    summary = run_step("select", inp.model_dump_json())
    assert summary == {"chosen_epoch": 2, "gauntlet.average": 0.3, "ties": 2}

    (choice_file,) = (limit_env / "artifacts" / "select").glob("*/choice.json")
    choice = json.loads(choice_file.read_text())
    assert choice["epoch"] == 2 and choice["sub"] == "epoch-2" and choice["finetune"] == "finetune/abc"
    assert choice["average"] == 0.3
    assert [(e["epoch"], e["average"]) for e in choice["epochs"]] == [(1, 0.1), (2, 0.3), (3, 0.3)]
    assert choice["epochs"][0]["categories"]["world_knowledge"] == 0.1

    client = mlflow.MlflowClient()
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.`limit.kind` = 'select'")
    assert run.data.tags["chosen_epoch"] == "2"
    curve = client.get_metric_history(run.info.run_id, "per_epoch.gauntlet.average")
    assert sorted((m.step, m.value) for m in curve) == [(1, 0.1), (2, 0.3), (3, 0.3)]
    # what the runs table shows is the chosen epoch's, logged once, never the last epoch's
    assert run.data.metrics["chosen_epoch"] == 2 and run.data.metrics["gauntlet.average"] == 0.3
    assert [m.step for m in client.get_metric_history(run.info.run_id, "gauntlet.average")] == [2]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_keep_selected_deletes_the_other_epochs_weights(limit_env, where, request, monkeypatch):
    """A 30B epoch is ~60 GB: with keep: selected only the chosen one stays; asking for another says why."""
    if where == "s3":
        monkeypatch.setenv("LIMIT_ARTIFACTS", f"s3://{request.getfixturevalue('s3_env')}/artifacts")
    store = Store.open()
    finetune = "finetune/0123456789abcdef0123"
    out = store.begin(finetune)
    for epoch in (1, 2, 3):
        (out / f"epoch-{epoch}").mkdir()
        (out / f"epoch-{epoch}" / "model.safetensors").write_bytes(b"w" * 10)
    planned = {"pruned_by": "00000000000000000001"}  # as the planner writes it for keep: selected
    store.commit(finetune, out, {"kind": "finetune", "input": planned, "summary": {}})
    refs = {e: _completed_gauntlet(store, f"keep-{where}-e{e}", a) for e, a in {1: 0.1, 2: 0.3, 3: 0.2}.items()}
    epochs = [EpochScore(epoch=e, gauntlet=r) for e, r in refs.items()]

    run_step("select", SelectInput(finetune=finetune, epochs=epochs, keep="selected").model_dump_json())

    assert (store.fetch(finetune, "epoch-2") / "model.safetensors").read_bytes() == b"w" * 10
    for gone in ("epoch-1", "epoch-3"):
        with pytest.raises(LimitError, match=rf"{gone}: deleted after the step completed \(training.keep: selected"):
            store.fetch(finetune, gone)
    assert store.manifest(refs[1]) is not None  # the scores of every epoch stay


def _gauntlet_with_rows(store: Store, key: str, rows: dict[str, list[int]]) -> str:
    """A completed tiny-suite gauntlet whose benchmarks scored these rows (1 correct, 0 wrong)."""
    from limit.gauntlet.benchmarks import suite
    from limit.gauntlet.scoring import aggregate, benchmark_result

    ref = f"gauntlet/{key}"
    out = store.begin(ref)
    (out / "details").mkdir()
    benches = suite("tiny")
    results = {}
    for bench in benches:
        correct = [bool(v) for v in rows[bench.name]]
        results[bench.name] = benchmark_result(bench, correct, None)
        details = [{"row": i, "correct": ok} for i, ok in enumerate(correct)]
        (out / "details" / f"{bench.name}.json").write_text(
            json.dumps({"result": results[bench.name], "details": details})
        )
    scores = {"suite": "tiny", "benchmarks": results, **aggregate(benches, results)}
    (out / "scores.json").write_text(json.dumps(scores))
    store.commit(ref, out, {"kind": "gauntlet", "key": key, "summary": {}})
    return ref


def test_selection_states_its_error_and_whether_the_runner_up_is_distinguishable(limit_env):
    """Hand-checked: Var(average) = sum over benchmarks b of s_b^2 / n_b / (1 - r_b)^2 / K_c^2 / 25, with K_c
    the benchmarks of b's category (tiny has two in world knowledge, one elsewhere)."""
    from collections import Counter

    from limit.gauntlet.benchmarks import suite

    store = Store.open()
    benches = suite("tiny")
    better = {b.name: [1, 1, 1, 0] for b in benches}
    worse = {b.name: [1, 1, 0, 0] for b in benches}
    refs = {1: _gauntlet_with_rows(store, "rows-e1", worse), 2: _gauntlet_with_rows(store, "rows-e2", better)}
    inp = SelectInput(finetune="finetune/abc", epochs=[EpochScore(epoch=e, gauntlet=r) for e, r in refs.items()])
    run_step("select", inp.model_dump_json())

    (choice_file,) = (limit_env / "artifacts" / "select").glob("*/choice.json")
    selection = json.loads(choice_file.read_text())["selection"]
    per_category = Counter(b.category for b in benches)
    term = {b.name: 0.25 / 4 / (1 - b.random_baseline) ** 2 / per_category[b.category] ** 2 for b in benches}
    expected = sum(term.values()) / 25  # s^2 of [1,1,1,0] = 1/4, n = 4
    assert selection["standard_error"] == pytest.approx(expected**0.5)
    diff = sum(term.values()) / 25  # the paired differences [0, 0, 1, 0] have s^2 = 1/4 too
    assert selection["runner_up"] == 1 and selection["difference_standard_error"] == pytest.approx(diff**0.5)
    assert selection["distinguishable"] == (selection["difference"] > 1.96 * diff**0.5)


def test_keep_selected_never_prunes_a_finetune_planned_with_keep_all(limit_env):
    """Another study (keep: all) shares such a finetune and may score any of its epochs."""
    store = Store.open()
    finetune = "finetune/0123456789abcdef0124"
    out = store.begin(finetune)
    for epoch in (1, 2):
        (out / f"epoch-{epoch}").mkdir()
        (out / f"epoch-{epoch}" / "model.safetensors").write_bytes(b"w" * 10)
    store.commit(finetune, out, {"kind": "finetune", "input": {}, "summary": {}})
    refs = {e: _completed_gauntlet(store, f"keep-all-e{e}", a) for e, a in {1: 0.1, 2: 0.3}.items()}
    epochs = [EpochScore(epoch=e, gauntlet=r) for e, r in refs.items()]
    run_step("select", SelectInput(finetune=finetune, epochs=epochs, keep="selected").model_dump_json())
    assert (store.fetch(finetune, "epoch-1") / "model.safetensors").read_bytes() == b"w" * 10


def test_keep_selected_is_in_the_finetune_key_with_how_its_epochs_are_chosen(tmp_path):
    """Two studies share a keep: selected finetune only when they score and choose its epochs alike, so none
    needs an epoch the other deleted; keep: all leaves the finetune's key as it was."""
    import yaml

    from limit.plan import build_plan
    from limit.spec.study import STUDIES_DIR, load_study

    def finetune_ref(data: dict) -> str:
        path = tmp_path / f"{data['name']}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return next(s for s in build_plan(load_study(str(path))).order() if s.kind == "finetune").ref

    base = yaml.safe_load((STUDIES_DIR / "tiny.yaml").read_text())
    keep_all = finetune_ref(base)
    assert keep_all == next(s for s in build_plan(load_study("tiny")).order() if s.kind == "finetune").ref
    training = {**base["training"], "defaults": {**base["training"]["defaults"], "keep": "selected"}}
    selected = {**base, "name": "tiny-selected", "training": training}
    assert finetune_ref(selected) != keep_all
    assert finetune_ref({**selected, "name": "another-name"}) == finetune_ref(selected)
    fewer_rows = {**selected, "name": "tiny-limit5", "gauntlet": {**base["gauntlet"], "limit": 5}}
    assert finetune_ref(fewer_rows) not in (keep_all, finetune_ref(selected))


def test_select_refuses_scores_that_leave_out_a_benchmark_the_gauntlet_was_asked_for(limit_env):
    """scores.json must account for every benchmark of its step's suite: scored, or missing for want of data."""
    from limit.gauntlet.benchmarks import suite
    from limit.gauntlet.scoring import aggregate, benchmark_result

    store = Store.open()
    benchmarks = suite("tiny")
    refs = {}
    for epoch, kept in ((1, benchmarks), (2, benchmarks[1:])):  # epoch 2's file lost its first benchmark
        ref = f"gauntlet/short-e{epoch}"
        out = store.begin(ref)
        results = {b.name: benchmark_result(b, [True, False], None) for b in benchmarks}
        scores = aggregate(benchmarks, results) | {"benchmarks": {b.name: results[b.name] for b in kept}}
        (out / "scores.json").write_text(json.dumps(scores))
        store.commit(ref, out, {"kind": "gauntlet", "input": {"gauntlet": {"suite": "tiny"}}, "summary": {}})
        refs[epoch] = ref
    epochs = [EpochScore(epoch=e, gauntlet=r) for e, r in refs.items()]
    inp = SelectInput(finetune="finetune/abd", epochs=epochs).model_dump_json()
    with pytest.raises(LimitError, match=rf"short-e2/scores.json: no score for {benchmarks[0].name} \(its gauntlet"):
        run_step("select", inp)


def test_a_malformed_choice_is_one_line_naming_its_file(tmp_path):
    """Every step that reads select's output reads it through one typed reader (limit.execution.outputs)."""
    from limit.execution import outputs

    path = tmp_path / "choice.json"
    path.write_text(json.dumps({"epoch": 2, "finetune": "finetune/abc", "average": 0.1}))
    with pytest.raises(LimitError, match=rf"^{path}: not a valid choice: sub: Field required$"):
        outputs.read(path, outputs.Choice)
    path.write_text('{"epoch": 2, "finetune": "finetune/abc", "sub": "epoch-2", "ave')
    with pytest.raises(LimitError, match=rf"^{path}: not a valid choice: "):
        outputs.read(path, outputs.Choice)


def test_a_selection_split_chooses_on_one_half_and_shows_the_other(limit_env):
    """Epoch 1 answers exactly the choosing half's rows, epoch 2 three of them and every held-out row: the split
    chooses epoch 1 (all rows would choose epoch 2), which ranks last on the held-out half."""
    from limit.gauntlet.benchmarks import suite
    from limit.gauntlet.scoring import aggregate, rescale
    from limit.gauntlet.split import halves

    store = Store.open()
    benches = suite("tiny")
    drawn = halves({b.name: range(8) for b in benches}, seed=5)
    assert all(len(a) == len(b) == 4 and not set(a) & set(b) for a, b in drawn.values())
    assert drawn == halves({b.name: range(8) for b in reversed(benches)}, seed=5) != halves(drawn, seed=6)
    first = {b.name: [int(i in drawn[b.name][0]) for i in range(8)] for b in benches}
    second = {b.name: [int(i in drawn[b.name][1] or i in drawn[b.name][0][:3]) for i in range(8)] for b in benches}
    refs = {1: _gauntlet_with_rows(store, "split-e1", first), 2: _gauntlet_with_rows(store, "split-e2", second)}
    inp = SelectInput(
        finetune="finetune/abc", epochs=[EpochScore(epoch=e, gauntlet=r) for e, r in refs.items()], split_seed=5
    )
    summary = run_step("select", inp.model_dump_json())
    (choice_file,) = (limit_env / "artifacts" / "select").glob("*/choice.json")
    choice = json.loads(choice_file.read_text())
    split = choice["split"]
    assert choice["epoch"] == split["chosen"] == 1 and split["held_out_rank"] == 2
    assert split["rows"] == {"selection": 4 * len(benches), "held_out": 4 * len(benches)}
    all_wrong = aggregate(benches, {b.name: {"score": rescale(0.0, b.random_baseline)} for b in benches})["average"]
    mine = split["epochs"][0]
    assert mine["selection"] == pytest.approx(1.0) and mine["held_out"] == pytest.approx(all_wrong)
    assert split["optimism"] == pytest.approx(1.0 - all_wrong) == summary["selection.optimism"]
    assert "split_seed" not in SelectInput(finetune="f", epochs=[]).model_dump()  # off: the paper's key as before
