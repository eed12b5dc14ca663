"""judge step: responses of two generate outputs, paired per seed and prompt id, judged by the local LM judge
and by the openai backend against a judge server on 127.0.0.1; result.json, annotations, caches, MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limit.errors import LimitError
from limit.execution.store import Store
from limit.judge.ranking import FIRST_WINS, SECOND_WINS
from limit.judge.replay_server import JudgeServer, Reply
from limit.models.base import materialize_tiny
from limit.spec.study import JudgeSpec, TinyModel

INSTRUCTIONS = ["Name a fruit.", "Say hello.", "Count to three.", "Name a colour.", "Pick a number."]


def completed_generate(store: Store, name: str, outputs: dict[int, list[str | None]]) -> str:
    """A finished generate step in the store, as the real step leaves it (None: a failed generation)."""
    ref = f"generate/{name}"
    out = store.begin(ref)
    with open(out / "responses.jsonl", "w") as f:
        for seed, texts in outputs.items():
            for i, (instruction, text) in enumerate(zip(INSTRUCTIONS, texts, strict=True)):
                row = {"prompt_id": f"{i:04d}", "instruction": instruction, "output": text or "", "seed": seed}
                if text is None:
                    row |= {"finish_reason": "error", "error": "RuntimeError: CUDA out of memory"}
                f.write(json.dumps(row) + "\n")
    prompts = len(next(iter(outputs.values())))
    store.commit(ref, out, {"kind": "generate", "summary": {"prompts": prompts, "seeds": len(outputs)}})
    return ref


@pytest.fixture
def refs(limit_env: Path) -> tuple[str, str]:
    store = Store.open()
    a = completed_generate(store, "a", {1: [f"GOOD {i}" for i in range(5)], 2: [f"GOOD {i}!" for i in range(5)]})
    b_texts = {1: ["plain"] * 4 + ["GOOD 4"], 2: ["plain"] * 5}  # seed 1, prompt 4: identical outputs -> a tie
    return a, completed_generate(store, "b", b_texts)


def judge_input(a: str, b: str, **judge) -> str:
    return json.dumps({"a": a, "b": b, "judge": {"bootstrap": 50, **judge}, "tags": {"a": "A", "b": "B"}})


def prefers_good(instruction: str, shown_1: str, shown_2: str) -> Reply:
    return Reply(FIRST_WINS if shown_1.startswith("GOOD") else SECOND_WINS)


def test_openai_backend_step_result_annotations_cache_and_mlflow(refs, limit_env: Path):
    import mlflow

    from limit.runner import run_step

    with JudgeServer(prefers_good) as server:
        summary = run_step("judge", judge_input(*refs, base_url=server.base_url, model="judge-model", max_retries=1))
        assert server.requests == 9  # 10 pairs, one tie that alpaca-eval settles without asking
    assert summary["win_rate_a"] == 1.0 and (summary["wins_a"], summary["ties"], summary["failures"]) == (9, 1, 0)

    out = next((limit_env / "artifacts" / "judge").iterdir())
    result = json.loads((out / "result.json").read_text())
    assert result["seeds"]["1"] == {"wins_a": 4, "wins_b": 0, "ties": 1, "failures": 0, "n": 5, "win_rate_a": 1.0}
    assert result["cost"]["tokens"] > 0 and result["cost"]["dollars"] is None  # unknown model: no price
    assert sorted(p.name for p in (out / "cache").iterdir()) == ["seed-1.json", "seed-2.json"]
    annotations = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    assert [a["winner"] for a in annotations].count("tie") == 1 and len(annotations) == 10

    runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`limit.kind` = 'judge'")
    assert len(runs) == 1 and runs["metrics.win_rate_a"].iloc[0] == 1.0
    assert runs["metrics.ci95_low"].iloc[0] <= 1.0


def test_the_spec_seed_reaches_every_judge_step_and_the_report():
    """judge.bootstrap_seed is resolved once, in the plan: the judge steps and the report get the same value, and
    the default (0) leaves the report's key as it was before the report took a seed."""
    from limit.plan import build_plan
    from limit.spec.study import load_study

    study = load_study("tiny")
    default = build_plan(study)
    assert "bootstrap_seed" not in default.steps["report"].input.model_dump()
    seeded = build_plan(study.model_copy(update={"judge": study.judge.model_copy(update={"bootstrap_seed": 11})}))
    judges = [s for s in seeded.steps.values() if s.kind == "judge"]
    assert judges and {s.input.judge.bootstrap_seed for s in judges} == {11}
    assert seeded.steps["report"].input.bootstrap_seed == 11
    assert seeded.steps["report"].key != default.steps["report"].key


def test_the_report_gives_a_pair_the_interval_its_judge_step_wrote(limit_env: Path):
    """One interval per pair: the judge step's result.json (and MLflow) and the report's paired comparison
    resample the same prompts and seeds from the spec's seed (judge.bootstrap_seed, the report's `seed`); another
    seed moves both intervals alike (7: one that moves this small pair's)."""
    from limit.report.data import assemble
    from limit.report.inputs import ReportPair
    from limit.runner import run_step
    from limit.steps import step_key
    from limit.steps.inputs import JudgeInput

    store = Store.open()
    a = completed_generate(store, "a3", {1: ["GOOD", "GOOD", "x", "GOOD", "x"], 2: ["x", "GOOD", "GOOD", "x", "x"]})
    b = completed_generate(store, "b3", {1: ["y", "GOOD", "y", "y", "GOOD"], 2: ["GOOD", "y", "y", "y", "GOOD"]})
    intervals = {}
    for seed in (11, 7):
        with JudgeServer(prefers_good) as server:
            inp = judge_input(a, b, base_url=server.base_url, model="judge-model", bootstrap=400, bootstrap_seed=seed)
            summary = run_step("judge", inp)
        ref = f"judge/{step_key('judge', JudgeInput.model_validate_json(inp))}"
        result = json.loads(store.read_text(ref, "result.json"))
        assert result["bootstrap"] == {"resamples": 400, "seed": seed}
        pair = ReportPair(a="A", b="B", prompts="five", judge=ref)
        data = assemble("s", [], [pair], store, seed=seed)
        (found,) = data["comparisons"]["win_rate"]
        assert found["win_rate"] == pytest.approx(result["win_rate_a"], abs=1e-12)
        assert [x + 0.5 for x in found["ci95"]] == pytest.approx(result["ci95"], abs=1e-9)
        assert [summary["ci95_low"], summary["ci95_high"]] == result["ci95"]
        assert result["ci95"][0] < result["ci95"][1] and data["provenance"]["bootstrap_seed"] == seed
        intervals[seed] = result["ci95"]
    assert intervals[11] != intervals[7]


def test_local_judge_always_parses_and_ties_identical_outputs(refs, limit_env: Path):
    from limit.runner import run_step

    inp = json.loads(judge_input(*refs, backend="local", local_model="tiny"))
    inp["judge_model"] = {"tiny": TinyModel(d_model=32, n_layers=1, n_heads=2).model_dump()}
    summary = run_step("judge", json.dumps(inp))
    assert summary["failures"] == 0 and summary["ties"] == 1
    assert summary["wins_a"] + summary["wins_b"] == 9


def test_local_judge_is_deterministic_and_randomizes_positions(tmp_path: Path):
    from limit.judge.local_backend import LocalJudge

    location = str(materialize_tiny(TinyModel(d_model=32, n_layers=1, n_heads=2), tmp_path))
    judge = LocalJudge(location, JudgeSpec().annotator)
    pairs = [(f"Question {i}?", f"answer one {i}", f"answer two {i}") for i in range(6)]
    first = [o.preference for o in judge.judge(pairs, seed=1)]
    assert first == [o.preference for o in judge.judge(pairs, seed=1)]
    assert set(first) <= {1.0, 2.0}
    shown_first = [o.raw == FIRST_WINS for o in judge.judge(pairs, seed=1)]
    from limit.judge.ranking import is_switched

    # the preference is the shown-first choice mapped back through the swap
    assert first == [1.0 if f != is_switched(p[0], 1) else 2.0 for f, p in zip(shown_first, pairs, strict=True)]


def test_unpaired_responses_are_a_one_line_error(limit_env: Path):
    from limit.runner import run_step

    store = Store.open()
    a = completed_generate(store, "a2", {1: ["x"] * 5})
    b = completed_generate(store, "b2", {2: ["y"] * 5})
    with pytest.raises(LimitError, match="no response for seed 1"):
        run_step("judge", judge_input(a, b, backend="local"))


def test_a_judge_outage_commits_nothing_and_the_rerun_asks_only_for_the_failed_judgments(refs, limit_env: Path):
    """A judge answering HTTP 500 (on two of the nine judgments asked): exit 75, no manifest and no result;
    then a healthy judge, and the rerun asks for those two only."""
    from limit.cli import main
    from limit.runner import run_step

    def down_for_colours(instruction: str, shown_1: str, shown_2: str) -> Reply:
        if "colour" in instruction:
            return Reply(status=500, error="The server had an error while processing your request.")
        return prefers_good(instruction, shown_1, shown_2)

    with JudgeServer(down_for_colours) as server:
        inp = judge_input(*refs, base_url=server.base_url, model="judge-model", max_retries=0, retry_wait=0)
        assert main(["step", "judge", "--input", inp]) == 75
        judged = limit_env / "artifacts" / "judge"
        assert not list(judged.rglob("_manifest.json")) and not list(judged.rglob("result.json"))
        assert len(list(judged.glob("*.partial/cache/seed-*.json"))) == 2  # what succeeded is kept

        server.policy, server.requests = prefers_good, 0  # the judge is back
        summary = run_step("judge", inp)
        assert server.requests == 2
    assert (summary["wins_a"], summary["failures"]) == (9, 0)


def test_failed_generations_are_failures_never_asked_of_the_judge(limit_env: Path):
    from limit.runner import run_step

    store = Store.open()
    a = completed_generate(store, "a3", {1: [f"GOOD {i}" for i in range(4)] + [None]})
    b = completed_generate(store, "b3", {1: ["plain"] * 5})
    with JudgeServer(prefers_good) as server:
        summary = run_step("judge", judge_input(a, b, base_url=server.base_url, max_failure_rate=0))
        assert server.requests == 4
    assert (summary["wins_a"], summary["failures"], summary["failed_generations"]) == (4, 1, 1)


def test_responses_short_of_one_per_prompt_and_seed_are_refused(limit_env: Path):
    """A responses.jsonl that lost its last rows (after its manifest was written) is never judged on fewer
    pairs: the judge checks the pair count against the generate step's prompts and seeds."""
    from limit.runner import run_step

    store = Store.open()
    a = completed_generate(store, "a3", {1: ["x"] * 5, 2: ["x"] * 5})
    b = completed_generate(store, "b3", {1: ["y"] * 5, 2: ["y"] * 5})
    manifest_path = Path(store.root) / a / "_manifest.json"
    for path in (Path(store.root) / a / "responses.jsonl", Path(store.root) / b / "responses.jsonl"):
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:-3]))
    manifest = json.loads(manifest_path.read_text())
    manifest["files"] = {}  # as an older manifest, which lists no sizes: only the shape check can tell
    manifest_path.write_text(json.dumps(manifest))
    (Path(store.root) / b / "_manifest.json").write_text(json.dumps(manifest | {"key": "b3"}))
    with pytest.raises(LimitError, match=r"judge: a .*seed 2: 2; expected one response per prompt and seed \(5 x 2\)"):
        run_step("judge", judge_input(a, b, backend="local"))


def test_a_torn_judge_cache_is_asked_again_not_a_crash(refs, limit_env: Path):
    """A kill while alpaca-eval wrote its cache left half a JSON file in `.partial`: the retry re-asks what it
    held (and caches are now written whole)."""
    from limit.cli import main
    from limit.runner import run_step

    def down_for_colours(instruction: str, shown_1: str, shown_2: str) -> Reply:
        if "colour" in instruction:
            return Reply(status=500, error="The server had an error while processing your request.")
        return prefers_good(instruction, shown_1, shown_2)

    with JudgeServer(down_for_colours) as server:
        inp = judge_input(*refs, base_url=server.base_url, model="judge-model", max_retries=0, retry_wait=0)
        assert main(["step", "judge", "--input", inp]) == 75
        (cache,) = [p for p in (limit_env / "artifacts" / "judge").glob("*.partial/cache/seed-1.json")]
        cache.write_text(cache.read_text()[: len(cache.read_text()) // 2])
        server.policy = prefers_good
        summary = run_step("judge", inp)
    assert (summary["wins_a"], summary["failures"]) == (9, 0)
    assert not list((limit_env / "artifacts" / "judge").rglob(".seed-*.tmp-*")), "no staging file is left"


@pytest.mark.parametrize("answer", [
    "[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 1}]",
    "[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 2}]",
], ids=["both first", "neither first"])  # fmt: skip
def test_an_answer_ranking_both_outputs_alike_is_a_failure_never_a_win(refs, limit_env: Path, answer: str):
    from limit.runner import run_step

    def confused_on_colours(instruction: str, shown_1: str, shown_2: str) -> Reply:
        return Reply(answer) if "colour" in instruction else prefers_good(instruction, shown_1, shown_2)

    with JudgeServer(confused_on_colours) as server:
        inp = judge_input(*refs, base_url=server.base_url, model="judge-model", max_retries=0, max_failure_rate=0.5)
        summary = run_step("judge", inp)
    assert (summary["wins_a"], summary["failures"]) == (7, 2), summary  # the colour prompt, in both seeds


def test_a_judge_that_prefers_the_first_shown_response_is_flagged(refs, limit_env: Path):
    """alpaca-eval shows A first or B first, seeded per prompt: a judge answering "the first" every time gives
    A about half the wins, which looks like a fair coin; the position check names it. A judge that reads the
    responses is not flagged."""
    from limit.runner import run_step

    with JudgeServer(lambda *shown: Reply(FIRST_WINS)) as server:
        biased = run_step("judge", judge_input(*refs, base_url=server.base_url, max_retries=0))
    assert "position bias" in biased["judge_warning"] and biased["first_shown_share"] == 1.0
    out = limit_env / "artifacts" / "judge"
    (folder,) = out.iterdir()
    result = json.loads((folder / "result.json").read_text())
    assert result["positions"]["decided"] == 9 and result["positions"]["p_value"] < 0.05
    annotations = [json.loads(line) for line in (folder / "annotations.jsonl").read_text().splitlines()]
    assert all(a["winner"] in (a["shown_first"], "tie") for a in annotations)

    with JudgeServer(prefers_good) as server:
        fair = run_step("judge", judge_input(*refs, base_url=server.base_url, max_retries=0, bootstrap=51))
    assert "judge_warning" not in fair and fair["win_rate_a"] == 1.0


def test_the_released_gpt4_verdicts_pass_the_position_check(shared: Path):
    """The authors' GPT-4-0613 verdicts, shown in alpaca-eval's seeded orders: no position bias flagged, in any
    of the 12 comparisons (the reference range for a real judge)."""
    from limit.judge.compare import position_check
    from limit.judge.ranking import is_switched
    from limit.judge.release import find_comparisons, judgments

    for comparison in find_comparisons(shared / "limit_release"):
        annotations = []
        for seed in comparison.seed_files:
            rows = comparison.rows(seed)
            for row, judged in zip(rows, judgments(rows), strict=True):
                winner = {1.0: "a", 2.0: "b"}.get(judged.preference, "tie" if judged.preference else None)
                shown = "b" if is_switched(row["instruction"], int(seed)) else "a"
                annotations.append({"winner": winner, "shown_first": shown, "preference": judged.preference,
                                    "failed_generation": False})  # fmt: skip
        check = position_check(annotations)
        assert check["warning"] is None and 0.4 < check["first_shown_share"] < 0.6, comparison.label
