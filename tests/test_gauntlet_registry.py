"""The 33 Eval Gauntlet v0 benchmarks, with the settings of llm-foundry's tasks.yaml at be467aee1."""

from __future__ import annotations

import pytest

from limit.errors import LimitError
from limit.execution.locations import FIXTURES
from limit.gauntlet.benchmarks import CATEGORIES, SUITES, suite
from limit.gauntlet.fewshot import read_rows
from limit.gauntlet.tasks import REQUIRED_FIELDS

A = "\nAnswer: "
# name: (category, kind, shots, random baseline, continuation delimiter)
EXPECTED = {
    "jeopardy": ("world_knowledge", "language_modeling", 10, 0.0, A),
    "bigbench_qa_wikidata": ("world_knowledge", "language_modeling", 10, 0.0, " "),
    "arc_easy": ("world_knowledge", "multiple_choice", 10, 0.25, A),
    "arc_challenge": ("world_knowledge", "multiple_choice", 10, 0.25, A),
    "mmlu": ("world_knowledge", "multiple_choice", 10, 0.25, A),
    "bigbench_misconceptions": ("world_knowledge", "multiple_choice", 10, 0.5, " "),
    "copa": ("commonsense_reasoning", "multiple_choice", 0, 0.5, " "),
    "piqa": ("commonsense_reasoning", "multiple_choice", 10, 0.5, A),
    "openbook_qa": ("commonsense_reasoning", "multiple_choice", 0, 0.25, " "),
    "bigbench_novel_concepts": ("commonsense_reasoning", "multiple_choice", 10, 0.25, " "),
    "bigbench_strange_stories": ("commonsense_reasoning", "multiple_choice", 10, 0.5, " "),
    "bigbench_strategy_qa": ("commonsense_reasoning", "multiple_choice", 10, 0.5, " "),
    "lambada_openai": ("language_understanding", "language_modeling", 0, 0.0, " "),
    "hellaswag": ("language_understanding", "multiple_choice", 10, 0.25, " "),
    "winograd": ("language_understanding", "schema", 0, 0.5, " "),
    "winogrande": ("language_understanding", "schema", 0, 0.5, " "),
    "bigbench_conlang_translation": ("language_understanding", "language_modeling", 0, 0.0, " "),
    "bigbench_language_identification": ("language_understanding", "multiple_choice", 10, 0.25, " "),
    "bigbench_conceptual_combinations": ("language_understanding", "multiple_choice", 10, 0.25, " "),
    "bigbench_elementary_math_qa": ("symbolic_problem_solving", "multiple_choice", 10, 0.25, " "),
    "bigbench_dyck_languages": ("symbolic_problem_solving", "language_modeling", 10, 0.0, " "),
    "bigbench_cs_algorithms": ("symbolic_problem_solving", "language_modeling", 10, 0.0, " "),
    "bigbench_logical_deduction": ("symbolic_problem_solving", "multiple_choice", 10, 0.25, " "),
    "bigbench_operators": ("symbolic_problem_solving", "language_modeling", 10, 0.0, " "),
    "bigbench_repeat_copy_logic": ("symbolic_problem_solving", "language_modeling", 10, 0.0, " "),
    "simple_arithmetic_withspaces": ("symbolic_problem_solving", "language_modeling", 10, 0.0, " "),
    "simple_arithmetic_nospaces": ("symbolic_problem_solving", "language_modeling", 10, 0.0, " "),
    "math_qa": ("symbolic_problem_solving", "multiple_choice", 10, 0.25, " "),
    "logi_qa": ("symbolic_problem_solving", "multiple_choice", 10, 0.25, A),
    "pubmed_qa_labeled": ("reading_comprehension", "language_modeling", 10, 0.0, " "),
    "squad": ("reading_comprehension", "language_modeling", 10, 0.0, " "),
    "bigbench_understanding_fables": ("reading_comprehension", "multiple_choice", 10, 0.25, " "),
    "boolq": ("reading_comprehension", "multiple_choice", 10, 0.5, A),
}
MISSING_FROM_SHARED = {"mmlu", "hellaswag", "squad", "bigbench_elementary_math_qa"}


def test_all_33_v0_benchmarks_with_their_settings():
    v0 = suite("v0")
    assert len(v0) == 33 and len({b.name for b in v0}) == 33
    got = {b.name: (b.category, b.kind, b.shots, b.random_baseline, b.delimiter) for b in v0}
    assert got == EXPECTED


def test_macro_averaged_benchmarks_and_files():
    v0 = {b.name: b for b in suite("v0")}
    assert {n for n, b in v0.items() if b.macro_average} == {"jeopardy", "mmlu"}
    assert v0["jeopardy"].file == "world_knowledge/jeopardy_all.jsonl"
    assert v0["winograd"].file == "language_understanding/winograd_wsc.jsonl"
    assert all(b.file == f"{b.category}/{b.name}.jsonl" for n, b in v0.items() if n not in ("jeopardy", "winograd"))


def test_five_categories_each_populated():
    for name, benches in SUITES.items():
        assert {b.category for b in benches} == set(CATEGORIES), name


def test_v0_files_present_in_shared(shared):
    data = shared / "gauntlet_data"
    present = {b.name for b in suite("v0") if (data / b.file).is_file()}
    assert present == set(EXPECTED) - MISSING_FROM_SHARED


def test_tiny_suite_files_are_packaged_in_gauntlet_format():
    kinds = set()
    for bench in suite("tiny"):
        rows = read_rows(FIXTURES / "gauntlet" / bench.file, REQUIRED_FIELDS[bench.kind])
        assert 8 <= len(rows) <= 20
        kinds.add(bench.kind)
        if bench.macro_average:
            assert len({r[bench.macro_average] for r in rows}) > 1
    assert kinds == {"multiple_choice", "schema", "language_modeling"}


def test_task_subsets_and_bad_names():
    assert [b.name for b in suite("v0", ["boolq", "copa"])] == ["copa", "boolq"]
    with pytest.raises(LimitError, match="gauntlet.tasks: not in suite 'v0': nope"):
        suite("v0", ["nope"])
    with pytest.raises(LimitError, match="gauntlet.suite: unknown suite 'v9'"):
        suite("v9")
