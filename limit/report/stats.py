"""The report's interval arithmetic: replicate spread, and seeded percentile bootstraps of differences.

- Gauntlet: the difference of two models' rescaled averages, paired by benchmark row. Each resample draws the
  rows of every benchmark with replacement (the same rows for both models) and recomputes the average
  difference; the average is linear in the benchmarks' row means, so each benchmark's resampled mean
  difference is drawn directly as a multinomial over its distinct row differences (the same distribution as
  drawing rows, in O(distinct values)). Macro-averaged benchmarks are pooled (a slight approximation).
- Win rates: `limit.stats.bootstrap`, the judge step's own bootstrap (prompts and sampling seeds), with the
  pair's resamples from its result.json; pairs compared share the draws (a paired difference).

Every bootstrap takes its own `numpy` generator seeded with `seed`: the same inputs give the same interval. The
report passes the study's judge.bootstrap_seed, the seed its judge steps drew their intervals with.
p-values are two-sided bootstrap p-values of no difference (`limit.stats.bootstrap.p_value`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from limit.gauntlet.benchmarks import Benchmark
from limit.gauntlet.scoring import average_weights
from limit.stats.bootstrap import RESAMPLES, SEED, Outcomes, interval, p_value, verdict, win_rate, win_rate_draws


def spread(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean and sample standard deviation of the known values (std None with fewer than two)."""
    known = [float(v) for v in values if v is not None]
    if not known:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(known, ddof=1)) if len(known) > 1 else None
    return {"mean": float(np.mean(known)), "std": std, "n": len(known)}


def paired_rows(rows_a: Mapping[int, float], rows_b: Mapping[int, float]) -> np.ndarray:
    """A's minus B's value on each row both scored, in row order."""
    return np.array([rows_a[i] - rows_b[i] for i in sorted(set(rows_a) & set(rows_b))], dtype=float)


def average_difference_draws(
    weights: Mapping[str, float], diffs: Mapping[str, np.ndarray], resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, np.ndarray] | None:
    """The weighted average of each benchmark's mean row difference, and `resamples` bootstrap draws of it
    (benchmarks in name order, one multinomial each). None when a benchmark has no paired row."""
    rng = np.random.default_rng(seed)
    point, draws = 0.0, np.zeros(resamples)
    for name in sorted(weights):
        rows = diffs.get(name)
        if rows is None or not len(rows):
            return None
        values, counts = np.unique(rows, return_counts=True)
        resampled = rng.multinomial(len(rows), counts / len(rows), size=resamples) @ values / len(rows)
        point += weights[name] * float(rows.mean())
        draws += weights[name] * resampled
    return point, draws


def gauntlet_difference(
    benchmarks: Sequence[Benchmark],
    rows_a: Mapping[str, Mapping[int, float]],
    rows_b: Mapping[str, Mapping[int, float]],
    reported: float,
    seed: int = SEED,
) -> dict | None:
    """A's gauntlet average minus B's (`reported`, from their scores) with a 95% interval from resampling
    benchmark rows, paired. The interval is shifted by the reported minus the pooled-row difference (nonzero
    only where a benchmark is macro-averaged). None without the per-row details of every benchmark."""
    weights = average_weights(benchmarks)
    if weights is None:
        return None
    diffs = {n: paired_rows(rows_a.get(n, {}), rows_b.get(n, {})) for n in weights}
    found = average_difference_draws(weights, diffs, seed=seed)
    if found is None:
        return None
    pooled, draws = found
    shifted = draws + (reported - pooled)
    return verdict(reported, interval(shifted)) | {"p_value": p_value(shifted)}


def win_rate_interval(outcomes: Outcomes, resamples: int = RESAMPLES, seed: int = SEED) -> dict | None:
    """A's win rate minus one half (an even match), with the interval the judge step wrote for the same pair and
    seed (`limit.stats.bootstrap.win_rate_ci`, shifted by one half)."""
    rate = win_rate(outcomes)
    if rate is None:
        return None
    (draws,) = win_rate_draws([outcomes], resamples, seed)
    return verdict(rate - 0.5, interval(draws - 0.5)) | {"win_rate": rate, "p_value": p_value(draws, 0.5)}


def win_rate_difference(first: Outcomes, second: Outcomes, resamples: int = RESAMPLES, seed: int = SEED) -> dict | None:
    """The first pair's win rate minus the second's, paired by prompt and sampling seed."""
    rates = [win_rate(first), win_rate(second)]
    if None in rates:
        return None
    draws = win_rate_draws([first, second], resamples, seed)
    return verdict(rates[0] - rates[1], interval(draws[0] - draws[1])) | {"p_value": p_value(draws[0] - draws[1])}


def gauntlet_average_draws(
    benchmarks: Sequence[Benchmark],
    rows_of: Sequence[Mapping[str, Mapping[int, float]]],
    reported: Sequence[float],
    resamples: int = RESAMPLES,
    seed: int = SEED,
    weights: Mapping[str, float] | None = None,
) -> np.ndarray | None:
    """Several models' gauntlet averages in every resample (models x resamples), drawing the rows every model
    scored once per benchmark (benchmarks in name order) for all of them, so the models stay paired; shifted by
    each reported average minus its pooled-row one. None without a shared row in some benchmark. `weights`:
    per benchmark, for another weighted mean than the average (a category's score)."""
    weights = weights or average_weights(benchmarks)
    if weights is None or not rows_of:
        return None
    rng = np.random.default_rng(seed)
    draws, pooled = np.zeros((len(rows_of), resamples)), np.zeros(len(rows_of))
    for name in sorted(weights):
        shared = sorted(set.intersection(*(set(rows.get(name, {})) for rows in rows_of)))
        if not shared:
            return None
        values = np.array([[rows[name][i] for i in shared] for rows in rows_of])  # models x rows
        counts = rng.multinomial(len(shared), [1 / len(shared)] * len(shared), size=resamples)
        draws += weights[name] * (values @ counts.T) / len(shared)
        pooled += weights[name] * values.mean(axis=1)
    return draws + (np.asarray(reported, dtype=float) - pooled)[:, None]


def counted_draws(seeds: Mapping[str, Mapping[str, int]], resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """A pair's win rate in every resample from its per-seed counts alone (no per-prompt outcomes, as in a
    published table): each seed's wins drawn binomially from its decided judgments, the mean over seeds."""
    rng = np.random.default_rng(seed)
    rates = []
    for counts in (seeds[s] for s in sorted(seeds)):
        decided = counts["wins_a"] + counts["wins_b"]
        if decided:
            rates.append(rng.binomial(decided, counts["wins_a"] / decided, size=resamples) / decided)
    return np.mean(rates, axis=0) if rates else np.full(resamples, np.nan)
