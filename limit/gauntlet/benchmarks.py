"""The Eval Gauntlet's benchmarks and suites.

"v0" is MosaicML's Eval Gauntlet as the LIMIT paper ran it (llm-foundry `scripts/eval/yamls/tasks.yaml` and
`eval_gauntlet.yaml` at commit be467aee1): 33 benchmarks in 5 categories. "tiny" is the project's own small
task files (limit/fixtures/gauntlet/), one per category, for the tiny study.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from limit.errors import LimitError

CATEGORIES = (
    "world_knowledge",
    "commonsense_reasoning",
    "language_understanding",
    "symbolic_problem_solving",
    "reading_comprehension",
)

# How the paper's tables name the categories (Av, World, Com Reas, Lang Und, Symb Prob, Read Comp).
CATEGORY_TITLES = {
    "world_knowledge": "World",
    "commonsense_reasoning": "Com Reas",
    "language_understanding": "Lang Und",
    "symbolic_problem_solving": "Symb Prob",
    "reading_comprehension": "Read Comp",
}

Kind = Literal["multiple_choice", "schema", "language_modeling"]


@dataclass(frozen=True)
class Benchmark:
    """One gauntlet task: a jsonl file scored with composer's in-context-learning metric for its kind.

    multiple_choice rows: {query, choices, gold}; schema rows: {context_options, continuation, gold};
    language_modeling rows: {context, continuation}. `macro_average` names a row field (`category`) whose
    groups are scored separately and then averaged with equal weight.
    """

    name: str
    category: str
    kind: Kind
    shots: int
    random_baseline: float
    file: str  # relative to the data location, e.g. "world_knowledge/arc_easy.jsonl"
    delimiter: str = " "
    macro_average: str | None = None


def _b(name, category, kind, shots, baseline, delimiter=" ", file=None, macro=None) -> Benchmark:
    return Benchmark(
        name=name,
        category=category,
        kind=kind,
        shots=shots,
        random_baseline=baseline,
        file=f"{category}/{file or name}.jsonl",
        delimiter=delimiter,
        macro_average=macro,
    )


MC, SCHEMA, LM = "multiple_choice", "schema", "language_modeling"
ANSWER = "\nAnswer: "
WK, CR, LU, SP, RC = CATEGORIES

V0 = (
    _b("jeopardy", WK, LM, 10, 0.0, ANSWER, file="jeopardy_all", macro="category"),
    _b("bigbench_qa_wikidata", WK, LM, 10, 0.0),
    _b("arc_easy", WK, MC, 10, 0.25, ANSWER),
    _b("arc_challenge", WK, MC, 10, 0.25, ANSWER),
    _b("mmlu", WK, MC, 10, 0.25, ANSWER, macro="category"),
    _b("bigbench_misconceptions", WK, MC, 10, 0.5),
    _b("copa", CR, MC, 0, 0.5),
    _b("piqa", CR, MC, 10, 0.5, ANSWER),
    _b("openbook_qa", CR, MC, 0, 0.25),
    _b("bigbench_novel_concepts", CR, MC, 10, 0.25),
    _b("bigbench_strange_stories", CR, MC, 10, 0.5),
    _b("bigbench_strategy_qa", CR, MC, 10, 0.5),
    _b("lambada_openai", LU, LM, 0, 0.0),
    _b("hellaswag", LU, MC, 10, 0.25),
    _b("winograd", LU, SCHEMA, 0, 0.5, file="winograd_wsc"),
    _b("winogrande", LU, SCHEMA, 0, 0.5),
    _b("bigbench_conlang_translation", LU, LM, 0, 0.0),
    _b("bigbench_language_identification", LU, MC, 10, 0.25),
    _b("bigbench_conceptual_combinations", LU, MC, 10, 0.25),
    _b("bigbench_elementary_math_qa", SP, MC, 10, 0.25),
    _b("bigbench_dyck_languages", SP, LM, 10, 0.0),
    _b("bigbench_cs_algorithms", SP, LM, 10, 0.0),
    _b("bigbench_logical_deduction", SP, MC, 10, 0.25),
    _b("bigbench_operators", SP, LM, 10, 0.0),
    _b("bigbench_repeat_copy_logic", SP, LM, 10, 0.0),
    _b("simple_arithmetic_withspaces", SP, LM, 10, 0.0),
    _b("simple_arithmetic_nospaces", SP, LM, 10, 0.0),
    _b("math_qa", SP, MC, 10, 0.25),
    _b("logi_qa", SP, MC, 10, 0.25, ANSWER),
    _b("pubmed_qa_labeled", RC, LM, 10, 0.0),
    _b("squad", RC, LM, 10, 0.0),
    _b("bigbench_understanding_fables", RC, MC, 10, 0.25),
    _b("boolq", RC, MC, 10, 0.5, ANSWER),
)

TINY = (
    _b("tiny_jeopardy", WK, LM, 2, 0.0, ANSWER, macro="category"),
    _b("tiny_arc", WK, MC, 2, 0.25, ANSWER),
    _b("tiny_copa", CR, MC, 0, 0.5),
    _b("tiny_winograd", LU, SCHEMA, 0, 0.5),
    _b("tiny_arithmetic", SP, LM, 3, 0.0),
    _b("tiny_boolq", RC, MC, 2, 0.5, ANSWER),
)

SUITES: dict[str, tuple[Benchmark, ...]] = {"v0": V0, "tiny": TINY}


def suite(name: str, tasks: list[str] | None = None) -> list[Benchmark]:
    """The benchmarks of a suite, or the named subset of them (in the suite's order)."""
    if name not in SUITES:
        raise LimitError(f"gauntlet.suite: unknown suite '{name}' (known: {', '.join(SUITES)})")
    benchmarks = list(SUITES[name])
    if tasks is None:
        return benchmarks
    known = {b.name for b in benchmarks}
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise LimitError(f"gauntlet.tasks: not in suite '{name}': {', '.join(unknown)}")
    return [b for b in benchmarks if b.name in tasks]
