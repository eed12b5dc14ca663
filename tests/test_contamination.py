"""Contamination: a training row that copies a gauntlet item is found (13-gram rule, punctuation and case
ignored); rows that merely share words, or items too short for a 13-gram, are not."""

from __future__ import annotations

import json

from limit.data.contamination import N, Words, check, index, item_text
from limit.execution.io import read_jsonl
from limit.execution.locations import FIXTURES


def test_a_row_copying_a_gauntlet_item_is_found_and_only_that_row():
    first = sorted((FIXTURES / "gauntlet" / "world_knowledge").glob("*.jsonl"))[0]
    items = [json.loads(line) for line in first.read_text().splitlines() if line.strip()]
    long_item = next(item_text(r) for r in items if len(item_text(r).split()) >= N + 2)
    training = [r["prompt"] + r.get("response", "") for r in read_jsonl(FIXTURES / "tiny" / "dolly_hhrlhf.jsonl")]
    copied = "Here is a quiz. " + long_item.upper().replace(" ", "  ,") + " Answer it."
    words = Words()
    eval_sets = {"world": index([item_text(r) for r in items], words), "judge": index(["too short to match"], words)}
    table, hit = check([*training, copied], eval_sets, words)
    assert hit.tolist() == [False] * len(training) + [True]
    assert table["world"] == {"rows": 1, "share": 1 / (len(training) + 1)} and table["judge"]["rows"] == 0
    assert table["any"]["rows"] == 1
    twelve = " ".join(long_item.split()[: N - 1])  # one word short of a 13-gram: no match
    assert check([twelve], eval_sets, words)[1].tolist() == [False]
    assert check([" ".join(long_item.split()[:N])], eval_sets)[1].tolist() == [True]  # a fresh Words agrees


def test_the_step_finds_a_training_row_copying_a_gauntlet_item_and_the_report_shows_it(limit_env):
    from limit.execution.store import Store
    from limit.report.markdown import contamination_section
    from limit.runner import run_step
    from limit.spec.study import ContaminationSpec, GauntletSpec, PromptSet
    from limit.steps.inputs import ContaminationInput

    item = json.loads((FIXTURES / "gauntlet" / "world_knowledge" / "tiny_arc.jsonl").read_text().split("\n")[0])
    copied = {"prompt": "Answer this.", "response": item_text(item) + " " + item_text(item), "source": "copy"}
    rows = [*(r | {"source": "dolly"} for r in read_jsonl(FIXTURES / "tiny" / "dolly_hhrlhf.jsonl")[:10]), copied]
    store = Store.open()
    out = store.begin("prepare/copied")
    (out / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    store.commit("prepare/copied", out, {"kind": "prepare", "summary": {"rows": len(rows)}})
    inp = ContaminationInput(
        data="prepare/copied",
        gauntlet=GauntletSpec(suite="tiny", data="fixture:gauntlet"),
        prompts={"tiny-test": PromptSet(jsonl="fixture:tiny/judge_prompts.jsonl", field="prompt")},
        contamination=ContaminationSpec(check=True),
    )
    summary = run_step("contamination", inp.model_dump_json())
    assert (summary["rows"], summary["contaminated_rows"]) == (11, 1)
    (found_file,) = (limit_env / "artifacts" / "contamination").glob("*/contamination.json")
    found = json.loads(found_file.read_text())
    assert found["sets"]["tiny_arc"] == {"rows": 1, "share": 1 / 11, "kind": "gauntlet"}
    assert found["sets"]["tiny-test"]["kind"] == "judge prompts" and found["missing"] == []
    assert list((limit_env / "contamination-index").glob("*.npy"))  # built once, shared by content
    lines = contamination_section({"models": [{"dataset": "copied", "contamination": found}]})
    assert any(line.startswith("| copied | 11 | 1 (9.1%) | tiny_arc (gauntlet): 1 (9.1%) |") for line in lines)

    from limit.steps.inputs import Decontaminate, PrepareInput

    check_ref = "contamination/" + found_file.parent.name
    clean = PrepareInput(decontaminate=Decontaminate(of="prepare/copied", check=check_ref), tags={"dataset": "c"})
    summary = run_step("prepare", clean.model_dump_json())
    assert summary["rows"] == 10 and summary["dropped_contaminated"]["rows"] == 1
    assert (
        summary["dropped_contaminated"]["by"] == {"tiny_arc": 1}
        and "13-gram" in summary["dropped_contaminated"]["rule"]
    )
    assert "decontaminate" not in PrepareInput(mix=["prepare/x"]).model_dump()  # other datasets keep their keys


def test_a_decontaminated_dataset_is_a_new_prepare_step_after_its_check():
    from limit.plan import build_plan
    from limit.spec.study import load_study

    study = load_study("tiny")
    plain = build_plan(study).steps["finetune-tiny-lima"].input.data
    study.datasets["lima"] = study.datasets["lima"].model_copy(update={"decontaminate": True})
    plan = build_plan(study)
    clean = plan.steps["prepare-lima-decontaminated"]
    assert clean.deps == ("prepare-lima", "contamination-lima")
    assert plan.steps["finetune-tiny-lima"].input.data == clean.ref != plain
    (model,) = [m for m in plan.steps["report"].input.models if m.name == "tiny-lima"]
    assert model.contamination == plan.steps["contamination-lima"].ref  # what was found, then dropped
