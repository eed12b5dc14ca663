"""Composer's ICL metric semantics and the gauntlet's aggregation, on hand-built log-likelihoods."""

from __future__ import annotations

import pytest

from limit.gauntlet import scoring
from limit.gauntlet.benchmarks import CATEGORIES, Benchmark
from limit.gauntlet.evaluate import score_samples
from limit.gauntlet.fewshot import fewshot_indices, read_rows
from limit.gauntlet.tasks import prepare_docs, task_config

MC = Benchmark("mc", "world_knowledge", "multiple_choice", 2, 0.25, "world_knowledge/mc.jsonl", "\nAnswer: ")
SCHEMA = Benchmark("wino", "language_understanding", "schema", 1, 0.5, "language_understanding/wino.jsonl")
LM = Benchmark("lm", "symbolic_problem_solving", "language_modeling", 2, 0.0, "x/lm.jsonl", "\nAnswer: ")


class WordTokens:
    """Stands in for lm-eval's model where only `_encode_pair` is used: one token per word."""

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[str], list[str]]:
        return context.split(), continuation.split()


def test_choice_follows_mean_per_token_not_sum():
    # choice 0: 4 tokens, sum -6 (mean -1.5); choice 1: 1 token, sum -2 (mean -2). Sum picks 1, mean picks 0.
    logliks, tokens = [-6.0, -2.0], [4, 1]
    assert max(range(2), key=lambda i: logliks[i]) == 1
    assert scoring.mean_per_token_choice(logliks, tokens) == 0


def test_scored_samples_use_answer_token_counts():
    doc = {"query": "q", "choices": ["a b c d", "e"], "gold": 0, "_row": 0, "_shots": []}
    sample = {
        "doc_id": 0,
        "doc": doc,
        "arguments": [("q\nAnswer:", " a b c d"), ("q\nAnswer:", " e")],
        "filtered_resps": [(-6.0, False), (-2.0, True)],
    }
    result, details = score_samples(MC, [sample], WordTokens())
    assert details[0]["prediction"] == 0 and details[0]["tokens"] == [4, 1]
    assert result["accuracy"] == 1.0 and result["score"] == 1.0 and result["n"] == 1


def test_language_modelling_needs_every_token_greedy():
    docs = [{"context": "c", "continuation": "x", "_row": i, "_shots": []} for i in range(2)]
    samples = [
        {"doc_id": 0, "doc": docs[0], "arguments": [("c", " x")], "filtered_resps": [(-0.01, False)]},
        {"doc_id": 1, "doc": docs[1], "arguments": [("c", " x")], "filtered_resps": [(-9.0, True)]},
    ]
    result, details = score_samples(LM, samples, WordTokens())
    assert [d["correct"] for d in details] == [False, True]
    assert result["accuracy"] == 0.5


@pytest.mark.parametrize(
    ("acc", "baseline", "expected"),
    [(1.0, 0.25, 1.0), (0.25, 0.25, 0.0), (0.625, 0.25, 0.5), (0.0, 0.5, -1.0), (0.2, 0.25, -1 / 15), (0.3, 0.0, 0.3)],
)
def test_rescaling(acc, baseline, expected):
    assert scoring.rescale(acc, baseline) == pytest.approx(expected)


def test_macro_average_weights_groups_equally():
    correct = [True, True, True, False]
    groups = ["history", "history", "history", "science"]
    assert scoring.accuracy(correct) == 0.75
    assert scoring.accuracy(correct, groups) == 0.5
    bench = Benchmark("jeopardy", "world_knowledge", "language_modeling", 10, 0.0, "f", macro_average="category")
    result = scoring.benchmark_result(bench, correct, groups)
    assert result["accuracy"] == 0.5 and result["groups"] == 2


def _one_per_category() -> list[Benchmark]:
    return [Benchmark(f"b_{c}", c, "multiple_choice", 0, 0.5, f"{c}/b.jsonl") for c in CATEGORIES]


def test_categories_and_average():
    benches = _one_per_category() + [Benchmark("extra", "world_knowledge", "multiple_choice", 0, 0.5, "w/e.jsonl")]
    results = {b.name: {"score": 0.5} for b in benches}
    results["extra"] = {"score": -0.1}
    agg = scoring.aggregate(benches, results)
    assert agg["categories"]["world_knowledge"] == pytest.approx(0.2)
    assert agg["average"] == pytest.approx((0.2 + 0.5 * 4) / 5)
    assert agg["complete"] is True and agg["missing"] == []


def test_incomplete_category_is_null_and_so_is_the_average():
    benches = _one_per_category() + [Benchmark("extra", "world_knowledge", "multiple_choice", 0, 0.5, "w/e.jsonl")]
    results = {b.name: {"score": 0.5} for b in benches if b.name != "extra"}
    agg = scoring.aggregate(benches, results)
    assert agg["categories"]["world_knowledge"] is None  # never averaged over fewer benchmarks
    assert agg["categories"]["reading_comprehension"] == 0.5
    assert agg["average"] is None and agg["complete"] is False and agg["missing"] == ["extra"]


def test_fewshot_excludes_the_test_row_and_is_seeded():
    shots = fewshot_indices(12, 10, seed=1234)
    assert all(row not in picked and len(set(picked)) == 10 for row, picked in enumerate(shots))
    assert shots == fewshot_indices(12, 10, seed=1234)
    assert shots != fewshot_indices(12, 10, seed=7)
    # more shots than other rows: all the others, never itself
    assert [sorted(s) for s in fewshot_indices(3, 10, seed=1)] == [[1, 2], [0, 2], [0, 1]]
    assert fewshot_indices(5, 0, seed=1) == [[]] * 5


def test_rows_are_stripped(tmp_path):
    path = tmp_path / "lm.jsonl"
    path.write_text('{"context": "  25 - 759 = ", "continuation": " -734"}\n\n')
    assert read_rows(path) == [{"context": "25 - 759 =", "continuation": "-734"}]


def _requests(bench: Benchmark, rows: list[dict]) -> list:
    """The (context, continuation) pairs lm-eval itself builds from our task config."""
    from lm_eval.tasks import TaskManager

    config = task_config(bench, prepare_docs(bench, rows, seed=3), "gauntlet_test_" + bench.name)
    task = TaskManager(include_defaults=False).load([config])["tasks"][config["task"]]
    task.build_all_requests(limit=None, rank=0, world_size=1)
    return [(inst.doc_id, inst.doc["_shots"], inst.args) for inst in task.instances]


def test_multiple_choice_prompt_follows_composer():
    rows = [{"query": f"Question {i}?", "choices": [f"yes {i}", f"no {i}"], "gold": i % 2} for i in range(4)]
    for doc_id, shots, (context, continuation) in _requests(MC, rows):
        assert doc_id not in shots and len(shots) == 2
        shot_text = "".join(f"Question {j}?\nAnswer: {rows[j]['choices'][rows[j]['gold']]}\n" for j in shots)
        assert context == f"{shot_text}Question {doc_id}?\nAnswer:"  # delimiter's trailing space moves
        assert continuation in (f" yes {doc_id}", f" no {doc_id}")  # ... to the answer


def test_schema_prompt_scores_the_shared_continuation():
    rows = [
        {"context_options": [f"A{i} the cat", f"A{i} the dog"], "continuation": f"ran {i}.", "gold": i % 2}
        for i in range(3)
    ]
    requests = _requests(SCHEMA, rows)
    doc_id, shots, (context, continuation) = requests[0]
    (j,) = shots
    assert context == f"{rows[j]['context_options'][rows[j]['gold']]} ran {j}.\nA0 the cat"
    assert continuation == " ran 0."
    assert requests[1][2] == (f"{rows[j]['context_options'][rows[j]['gold']]} ran {j}.\nA0 the dog", " ran 0.")


def test_language_modelling_prompt():
    rows = [{"context": f"WORLD: clue {i}", "continuation": f"answer {i}"} for i in range(4)]
    for doc_id, shots, (context, continuation) in _requests(LM, rows):
        shot_text = "".join(f"WORLD: clue {j}\nAnswer: answer {j}\n" for j in shots)
        assert context == f"{shot_text}WORLD: clue {doc_id}\nAnswer:"
        assert continuation == f" answer {doc_id}"


def test_standard_errors_match_lm_evals_own_to_1e12():
    from lm_eval.api.metrics import mean_stderr

    correct = [True, False, True, True, False, True, True, False, False, True, True]
    values = [float(ok) for ok in correct]
    assert scoring.accuracy_stderr(correct) == pytest.approx(mean_stderr(values), abs=1e-12, rel=0)
    # by hand: 7 of 11 right, sample variance (7 * (4/11)^2 + 4 * (7/11)^2) / 10 = 0.2545..., over n
    assert scoring.accuracy_stderr(correct) == pytest.approx((28 / 110 / 11) ** 0.5, abs=1e-12, rel=0)
    assert scoring.accuracy_stderr([True]) is None  # one row has no sample variance


def test_a_score_category_and_average_carry_their_standard_error():
    mc = Benchmark("mc", "world_knowledge", "multiple_choice", 0, 0.25, "w/mc.jsonl")
    result = scoring.benchmark_result(mc, [True, False, True, True], None)
    assert result["stderr"] == pytest.approx(0.25, abs=1e-12)  # p = 3/4: sqrt((3/4 * 1/4) * 4/3 / 4)
    assert result["score_stderr"] == pytest.approx(0.25 / 0.75, abs=1e-12)  # rescaling is linear
    benches = _one_per_category() + [Benchmark("extra", "world_knowledge", "multiple_choice", 0, 0.5, "w/e.jsonl")]
    results = {b.name: {"score": 0.5, "score_stderr": 0.03} for b in benches}
    results["extra"]["score_stderr"] = 0.04
    agg = scoring.aggregate(benches, results)
    assert agg["categories_stderr"]["world_knowledge"] == pytest.approx(0.05 / 2, abs=1e-12)  # sqrt(.03²+.04²)/2
    assert agg["categories_stderr"]["reading_comprehension"] == pytest.approx(0.03, abs=1e-12)
    assert agg["average_stderr"] == pytest.approx((0.025**2 + 4 * 0.03**2) ** 0.5 / 5, abs=1e-12)
    del results["extra"]["score_stderr"]  # an older result without one: no standard error, never a guess
    assert scoring.aggregate(benches, results)["average_stderr"] is None


def test_the_averages_standard_error_is_the_one_selection_uses_on_independent_rows():
    benches = _one_per_category()
    rows = {b.name: [1.0, 0.0, 1.0, 1.0, 0.0][: 3 + i % 3] for i, b in enumerate(benches)}
    results = {b.name: scoring.benchmark_result(b, [v == 1.0 for v in rows[b.name]], None) for b in benches}
    agg = scoring.aggregate(benches, results)
    assert agg["average_stderr"] ** 2 == pytest.approx(scoring.average_variance(benches, rows), abs=1e-12)


def test_a_macro_averaged_benchmarks_standard_error_combines_its_groups():
    bench = Benchmark("jeopardy", "world_knowledge", "language_modeling", 10, 0.0, "f", macro_average="category")
    correct, groups = [True, False, True, True, False, False], ["h", "h", "h", "s", "s", "s"]
    se_h = se_s = (1 / 3 / 3) ** 0.5  # each group: 1 of 3 or 2 of 3, sample variance 1/3
    result = scoring.benchmark_result(bench, correct, groups)
    assert result["stderr"] == pytest.approx((se_h**2 + se_s**2) ** 0.5 / 2, abs=1e-12)
