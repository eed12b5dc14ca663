"""The report's interval arithmetic: replicate spread, and seeded percentile bootstraps of differences.

- Gauntlet: the difference of two models' rescaled averages, paired by benchmark row. Each resample draws the
  rows of every benchmark with replacement (the same rows for both models) and recomputes the average
  difference; the average is linear in the benchmarks' row means, so each benchmark's resampled mean
  difference is drawn directly as a multinomial over its distinct row differences (the same distribution as
  drawing rows, in O(distinct values)). Macro-averaged benchmarks are pooled (a slight approximation).
- Win rates: prompts and sampling seeds drawn with replacement, the same draws for every pair compared (so a
  difference of two win rates on the same prompts is paired); each resample's rate is the mean over the drawn
  seeds of each seed's wins_a / (wins_a + wins_b), as `limit.judge.winrate` counts it.

Every bootstrap takes its own `numpy` generator seeded with `seed`: the same inputs give the same interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from limit.gauntlet.benchmarks import Benchmark
from limit.gauntlet.scoring import average_weights

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95


def spread(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean and sample standard deviation of the known values (std None with fewer than two)."""
    known = [float(v) for v in values if v is not None]
    if not known:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(known, ddof=1)) if len(known) > 1 else None
    return {"mean": float(np.mean(known)), "std": std, "n": len(known)}


def interval(draws: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The percentile interval of the finite draws."""
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return None
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))]


def verdict(difference: float, ci: list[float] | None) -> dict:
    """A difference, its interval and whether the interval excludes zero."""
    return {"difference": difference, "ci95": ci, "distinguishable": ci is not None and (ci[0] > 0 or ci[1] < 0)}


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
    return verdict(reported, interval(draws + (reported - pooled)))


def outcome_matrix(annotations: Sequence[dict], seeds: Sequence[str], prompts: Sequence[str]) -> np.ndarray:
    """seeds x prompts: +1 where the judge preferred A, -1 where B, 0 for a tie, a failure or no judgment."""
    where = {(str(s), str(p)): (i, j) for i, s in enumerate(seeds) for j, p in enumerate(prompts)}
    matrix = np.zeros((len(seeds), len(prompts)))
    for row in annotations:
        cell = where.get((str(row["seed"]), str(row["prompt_id"])))
        if cell is not None:
            matrix[cell] = {"a": 1.0, "b": -1.0}.get(row.get("winner"), 0.0)
    return matrix


def win_rate(matrix: np.ndarray) -> float | None:
    """The mean over seeds of each seed's wins / (wins + losses), seeds with no decided prompt skipped."""
    wins, losses = (matrix == 1).sum(axis=1), (matrix == -1).sum(axis=1)
    rates = [w / (w + lo) for w, lo in zip(wins, losses, strict=True) if w + lo]
    return float(np.mean(rates)) if rates else None


def win_rate_draws(matrices: Sequence[np.ndarray], resamples: int = RESAMPLES, seed: int = SEED) -> list[np.ndarray]:
    """Each matrix's win rate in every resample; prompts (multinomial counts) then seeds (indices) are drawn
    once and shared by all matrices. A resample where no drawn seed has a decided prompt is NaN."""
    seeds, prompts = matrices[0].shape
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(prompts, [1 / prompts] * prompts, size=resamples)  # resamples x prompts
    picks = rng.integers(0, seeds, size=(resamples, seeds))
    out = []
    for matrix in matrices:
        wins, losses = counts @ (matrix == 1).T, counts @ (matrix == -1).T  # resamples x seeds
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN, dropped by `interval`
            rates = np.where(wins + losses > 0, wins / (wins + losses), np.nan)
            out.append(np.nanmean(np.take_along_axis(rates, picks, axis=1), axis=1))
    return out


def win_rate_interval(matrix: np.ndarray, seed: int = SEED) -> dict | None:
    """A's win rate minus one half (an even match), with its interval over prompts and sampling seeds."""
    rate = win_rate(matrix)
    if rate is None:
        return None
    (draws,) = win_rate_draws([matrix], seed=seed)
    return verdict(rate - 0.5, interval(draws - 0.5)) | {"win_rate": rate}


def win_rate_difference(first: np.ndarray, second: np.ndarray, seed: int = SEED) -> dict | None:
    """The first matrix's win rate minus the second's, paired by prompt and sampling seed."""
    rates = [win_rate(first), win_rate(second)]
    if None in rates:
        return None
    draws = win_rate_draws([first, second], seed=seed)
    return verdict(rates[0] - rates[1], interval(draws[0] - draws[1]))
