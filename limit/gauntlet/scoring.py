"""Composer's ICL metrics and the gauntlet's aggregation, from lm-eval's per-request log-likelihoods.

- multiple choice / schema: the prediction is the choice whose answer tokens have the highest *mean*
  log-likelihood per token (composer's lowest per-token perplexity; not lm-eval's `acc`, which sums, nor
  `acc_norm`, which divides by characters).
- language modelling: correct only when every answer token is the greedy argmax (lm-eval's `is_greedy`).
- benchmark score = (accuracy - random baseline) / (1 - random baseline), after macro-averaging over the
  rows' `category` where the benchmark says so; category = equal-weight mean of its benchmarks, reported
  as None when any of them is missing; average = mean of the five categories, None unless all are there.
- standard errors follow lm-eval's convention (`lm_eval.api.metrics.mean_stderr`: the sample standard
  deviation of the per-row metric, n - 1, over sqrt(n)); a macro average's is its groups' combined as
  independent means; a score's is the accuracy's over (1 - random baseline); a category's and the average's
  treat their parts as independent: sqrt(sum se_i^2) / k.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from limit.errors import LimitError
from limit.execution.outputs import Scores
from limit.gauntlet.benchmarks import CATEGORIES, Benchmark, suite


def mean_per_token_choice(logliks: Sequence[float], n_tokens: Sequence[int]) -> int:
    """Index of the choice with the highest mean log-likelihood per answer token (first one on ties)."""
    means = [ll / max(n, 1) for ll, n in zip(logliks, n_tokens, strict=True)]
    return max(range(len(means)), key=lambda i: (means[i], -i))


def rescale(accuracy: float, random_baseline: float) -> float:
    """Accuracy above chance, as a fraction of the headroom above chance (negative below chance)."""
    return (accuracy - random_baseline) / (1.0 - random_baseline)


def accuracy(correct: Sequence[bool], groups: Sequence[str] | None = None) -> float:
    """Plain accuracy, or the equal-weight mean of per-group accuracies when `groups` is given."""
    if not correct:
        raise ValueError("no scored rows")
    if groups is None:
        return sum(correct) / len(correct)
    by_group: dict[str, list[bool]] = defaultdict(list)
    for ok, group in zip(correct, groups, strict=True):
        by_group[group].append(ok)
    return sum(sum(v) / len(v) for v in by_group.values()) / len(by_group)


def mean_stderr(values: Sequence[float]) -> float | None:
    """Standard error of a mean as lm-eval computes it: sample standard deviation over sqrt(n); None below
    two rows."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) / math.sqrt(len(values))


def combined_stderr(errors: Sequence[float | None]) -> float | None:
    """Standard error of the equal-weight mean of independent estimates; None if any has none."""
    if not errors or any(e is None for e in errors):
        return None
    return math.sqrt(sum(e**2 for e in errors)) / len(errors)


def accuracy_stderr(correct: Sequence[bool], groups: Sequence[str] | None = None) -> float | None:
    """`accuracy`'s standard error: lm-eval's over the rows, or the per-group means' combined."""
    if groups is None:
        return mean_stderr([float(ok) for ok in correct])
    by_group: dict[str, list[float]] = defaultdict(list)
    for ok, group in zip(correct, groups, strict=True):
        by_group[group].append(float(ok))
    return combined_stderr([mean_stderr(v) for v in by_group.values()])


def benchmark_result(bench: Benchmark, correct: Sequence[bool], groups: Sequence[str] | None) -> dict:
    grouped = groups if bench.macro_average else None
    acc, stderr = accuracy(correct, grouped), accuracy_stderr(correct, grouped)
    result = {
        "category": bench.category,
        "kind": bench.kind,
        "accuracy": acc,
        "stderr": stderr,
        "score": rescale(acc, bench.random_baseline),
        "score_stderr": None if stderr is None else stderr / (1.0 - bench.random_baseline),
        "n": len(correct),
        "random_baseline": bench.random_baseline,
    }
    if bench.macro_average and groups is not None:
        result["groups"] = len(set(groups))
    return result


def aggregate(benchmarks: Sequence[Benchmark], results: dict[str, dict]) -> dict:
    """Category scores and the study average from per-benchmark results.

    `benchmarks` is what the suite asked for; a category missing any of them (or with none of them) is
    incomplete and reported as None, never averaged over fewer benchmarks.
    """
    categories: dict[str, float | None] = {}
    errors: dict[str, float | None] = {}
    missing: list[str] = []
    for category in CATEGORIES:
        wanted = [b.name for b in benchmarks if b.category == category]
        absent = [name for name in wanted if name not in results]
        missing += absent
        if not wanted or absent:
            categories[category], errors[category] = None, None
        else:
            categories[category] = sum(results[name]["score"] for name in wanted) / len(wanted)
            errors[category] = combined_stderr([results[name].get("score_stderr") for name in wanted])
    complete = all(v is not None for v in categories.values())
    average = sum(categories.values()) / len(categories) if complete else None
    return {
        "categories": categories,
        "average": average,
        "categories_stderr": errors,
        "average_stderr": combined_stderr(list(errors.values())) if complete else None,
        "complete": complete,
        "missing": missing,
    }


def average_weights(benchmarks: Sequence[Benchmark]) -> dict[str, float] | None:
    """Each benchmark's weight in the gauntlet average, per unit of accuracy: rescaling by 1 / (1 - random
    baseline), then its category's equal-weight mean, then the mean of the categories. None when a category
    has no benchmark (the average is not defined)."""
    weights = {}
    for category in CATEGORIES:
        wanted = [b for b in benchmarks if b.category == category]
        if not wanted:
            return None
        for bench in wanted:
            weights[bench.name] = 1 / ((1 - bench.random_baseline) * len(wanted) * len(CATEGORIES))
    return weights


def category_weights(benchmarks: Sequence[Benchmark], category: str) -> dict[str, float] | None:
    """Each of `category`'s benchmarks' weight in its category's score, per unit of accuracy (None: none)."""
    wanted = [b for b in benchmarks if b.category == category]
    return {b.name: 1 / ((1 - b.random_baseline) * len(wanted)) for b in wanted} or None


def average_variance(benchmarks: Sequence[Benchmark], rows: dict[str, Sequence[float]]) -> float | None:
    """Variance of the gauntlet average implied by per-row values (1/0 correctness, or paired differences).

    Rows are taken as independent draws: a benchmark's mean has variance s^2 / n, weighted as in the average
    (`average_weights`). Macro-averaged benchmarks are treated as one pool of rows (a slight approximation).
    None if a benchmark has fewer than two rows, or a category none.
    """
    weights = average_weights(benchmarks)
    if weights is None:
        return None
    total = 0.0
    for name, weight in weights.items():
        values = rows.get(name) or []
        if len(values) < 2:
            return None
        mean = sum(values) / len(values)
        sample_var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        total += weight**2 * sample_var / len(values)
    return total


def metrics(scores: Scores) -> dict[str, float]:
    """The MLflow metric keys of one model's scores.json, shared by gauntlet, select and summary runs:
    `gauntlet.average`, `gauntlet.<category>` (the paper's columns) and `per_benchmark.<benchmark>` (its
    rescaled score), named so that MLflow's compare view, which sorts keys, lists the paper's first;
    incomplete values are left out (a missing key reads as n/a, a logged 0 would not)."""
    values = {"gauntlet.average": scores.average}
    values |= {f"gauntlet.{c}": v for c, v in scores.categories.items()}
    values |= {f"per_benchmark.{name}": r.score for name, r in scores.benchmarks.items()}
    return {k: float(v) for k, v in values.items() if v is not None}


def check_scored(scores: Scores, benchmarks: Sequence[Benchmark], where: str) -> None:
    """Refuse gauntlet scores that do not account for every benchmark their step was asked for: each one is
    scored or listed as missing (no data), and no other is there."""
    asked = {b.name for b in benchmarks}
    scored, missing = set(scores.benchmarks), set(scores.missing)
    unaccounted, extra = sorted(asked - scored - missing), sorted(scored - asked)
    if unaccounted or extra:
        what = f"no score for {', '.join(unaccounted)}" if unaccounted else f"scores {', '.join(extra)}, not asked"
        raise LimitError(f"{where}: {what} (its gauntlet asked for {len(asked)} benchmarks)")


def check_asked(scores: Scores, step_input: dict | None, where: str) -> Scores:
    """`scores`, refused unless they account for every benchmark the gauntlet step (its manifest's input) was
    asked for."""
    spec = (step_input or {}).get("gauntlet")
    if spec:
        check_scored(scores, suite(spec.get("suite", "v0"), spec.get("tasks")), where)
    return scores
