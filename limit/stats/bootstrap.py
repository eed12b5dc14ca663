"""Seeded percentile bootstraps.

A judged pair's outcomes are two seeds x prompts count matrices (wins of A, wins of B; a prompt judged twice
in a seed counts twice, as the paper counts duplicated rows; ties and failures count in neither). Its win
rate is the mean over seeds of each seed's wins_a / (wins_a + wins_b), seeds with no decided prompt skipped.
Its interval resamples what that mean averages over: prompts (multinomial counts, the same draw for every seed,
since seed s of A and B answered the same prompts) and then sampling seeds (indices, with replacement). Seeds
and prompts are always in string order (`Outcomes.from_rows`), so the same judgments and seed give the same
draws whoever calls. Several pairs passed together share the draws (paired differences).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95


def interval(draws: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The percentile interval of the finite draws."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return None
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))]


def verdict(difference: float, ci: list[float] | None) -> dict:
    """A difference, its interval and whether the interval excludes zero."""
    return {"difference": difference, "ci95": ci, "distinguishable": ci is not None and (ci[0] > 0 or ci[1] < 0)}


def p_value(draws: np.ndarray, null: float = 0.0) -> float | None:
    """Two-sided bootstrap p-value of `null`: twice the smaller share of finite draws on either side of it
    (a draw equal to it counts half to each side), at most 1."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return None
    below = (np.sum(draws < null) + 0.5 * np.sum(draws == null)) / len(draws)
    return float(min(1.0, 2 * min(below, 1 - below)))


@dataclass(frozen=True)
class Outcomes:
    """seeds x prompts: how often the judge preferred A (`wins`) and B (`losses`)."""

    seeds: tuple[str, ...]
    prompts: tuple[str, ...]
    wins: np.ndarray
    losses: np.ndarray

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple[object, object, str | None]],
        seeds: Sequence[str] | None = None,
        prompts: Sequence[str] | None = None,
    ) -> Outcomes:
        """From (seed, prompt_id, winner) rows, winner "a", "b" or anything else (tie, failure). Seeds and
        prompts default to those of the rows, in string order; rows outside given ones are ignored."""
        rows = [(str(s), str(p), w) for s, p, w in rows]
        seeds = tuple(sorted({s for s, _, _ in rows}) if seeds is None else seeds)
        prompts = tuple(sorted({p for _, p, _ in rows}) if prompts is None else prompts)
        at_seed, at_prompt = {s: i for i, s in enumerate(seeds)}, {p: j for j, p in enumerate(prompts)}
        wins, losses = np.zeros((len(seeds), len(prompts))), np.zeros((len(seeds), len(prompts)))
        for seed, prompt, winner in rows:
            if seed in at_seed and prompt in at_prompt and winner in ("a", "b"):
                (wins if winner == "a" else losses)[at_seed[seed], at_prompt[prompt]] += 1
        return cls(seeds, prompts, wins, losses)


def win_rate(outcomes: Outcomes) -> float | None:
    """The mean over seeds of each seed's wins / (wins + losses), seeds with no decided prompt skipped."""
    wins, losses = outcomes.wins.sum(axis=1), outcomes.losses.sum(axis=1)
    rates = [w / (w + lo) for w, lo in zip(wins, losses, strict=True) if w + lo]
    return float(np.mean(rates)) if rates else None


def win_rate_draws(pairs: Sequence[Outcomes], resamples: int = RESAMPLES, seed: int = SEED) -> list[np.ndarray]:
    """Each pair's win rate in every resample; prompt counts, then seed indices, drawn once for all pairs (which
    must share seeds and prompts). A resample where no drawn seed has a decided prompt is NaN."""
    seeds, prompts = len(pairs[0].seeds), len(pairs[0].prompts)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(prompts, [1 / prompts] * prompts, size=resamples)  # resamples x prompts
    picks = rng.integers(0, seeds, size=(resamples, seeds))
    out = []
    for pair in pairs:
        wins, losses = counts @ pair.wins.T, counts @ pair.losses.T  # resamples x seeds
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: NaN, dropped by `interval`
            rates = np.where(wins + losses > 0, wins / (wins + losses), np.nan)
            out.append(np.nanmean(np.take_along_axis(rates, picks, axis=1), axis=1))
    return out


def win_rate_ci(
    outcomes: Outcomes, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> list[float] | None:
    """The percentile interval of a pair's win rate (None without resamples or a decided prompt)."""
    if resamples <= 0 or not outcomes.prompts or win_rate(outcomes) is None:
        return None
    (draws,) = win_rate_draws([outcomes], resamples, seed)
    return interval(draws, level)
