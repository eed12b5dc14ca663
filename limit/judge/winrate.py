"""Win-rate arithmetic, shared by the judge step, `limit judge-pair` and `limit reproduce-winrates`.

A preference follows alpaca-eval's convention, seen from model A (shown as `output_1`): 1 = A preferred,
2 = B preferred, 1.5 = tie (alpaca-eval gives ties only for identical outputs; older files wrote 0),
anything else (None, NaN, -1) = the annotation failed. Per seed the win rate of A is
wins_a / (wins_a + wins_b): ties and failures are excluded, never counted as losses. A pair's win rate is
the mean over seeds, as in the paper. Win rates here are fractions in [0, 1].
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from limit.stats.bootstrap import Outcomes, win_rate_ci

WIN_A, WIN_B, TIE = 1.0, 2.0, 1.5


def normalize_preference(value) -> float | None:
    """1, 2 or 1.5 (tie), or None for a failed annotation; accepts the release files' strings ('1.0', '0')."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(number):
        return None
    if number in (WIN_A, WIN_B, TIE):
        return number
    if number == 0.0:  # older alpaca-eval: identical outputs
        return TIE
    return None


@dataclass
class Judgment:
    """One judged prompt of one seed: which prompt, the preference, and both responses' lengths (characters)."""

    prompt_id: str
    preference: float | None
    len_a: int = 0
    len_b: int = 0


@dataclass
class SeedCounts:
    wins_a: int = 0
    wins_b: int = 0
    ties: int = 0
    failures: int = 0

    @property
    def n(self) -> int:
        return self.wins_a + self.wins_b + self.ties + self.failures

    @property
    def win_rate_a(self) -> float | None:
        decided = self.wins_a + self.wins_b
        return self.wins_a / decided if decided else None

    def to_dict(self) -> dict:
        return {**asdict(self), "n": self.n, "win_rate_a": self.win_rate_a}


def count(preferences: Iterable) -> SeedCounts:
    counts = SeedCounts()
    for value in preferences:
        pref = normalize_preference(value)
        if pref == WIN_A:
            counts.wins_a += 1
        elif pref == WIN_B:
            counts.wins_b += 1
        elif pref == TIE:
            counts.ties += 1
        else:
            counts.failures += 1
    return counts


def mean_win_rate(per_seed: Sequence[SeedCounts]) -> float | None:
    """The paper's number: the mean over seeds of each seed's win rate (seeds with no decided prompt skipped)."""
    rates = [c.win_rate_a for c in per_seed if c.win_rate_a is not None]
    return sum(rates) / len(rates) if rates else None


def seed_std(per_seed: Sequence[SeedCounts]) -> float | None:
    """Sample standard deviation of the per-seed win rates (None with fewer than two seeds)."""
    rates = [c.win_rate_a for c in per_seed if c.win_rate_a is not None]
    return float(np.std(rates, ddof=1)) if len(rates) > 1 else None


def outcomes(per_seed: Mapping[str, Sequence[Judgment]]) -> Outcomes:
    """The judgments as `limit.stats` counts them (seeds and prompts in string order)."""
    winner = {WIN_A: "a", WIN_B: "b"}
    return Outcomes.from_rows(
        (seed, j.prompt_id, winner.get(normalize_preference(j.preference)))
        for seed, rows in per_seed.items()
        for j in rows
    )


def bootstrap_ci(
    per_seed: Mapping[str, Sequence[Judgment]], resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> list[float] | None:
    """Percentile interval of the mean win rate, resampling prompts and sampling seeds (`limit.stats.bootstrap`:
    the report's interval of the same pair, from the same seed, is this one)."""
    return win_rate_ci(outcomes(per_seed), resamples, seed, level)


def length_stats(lengths: Sequence[int]) -> dict[str, float]:
    if not lengths:
        return {"mean": 0.0, "median": 0.0, "max": 0.0}
    arr = np.asarray(lengths, dtype=float)
    return {"mean": float(arr.mean()), "median": float(np.median(arr)), "max": float(arr.max())}


def length_controlled_win_rate(rows: Sequence[Judgment]) -> tuple[float | None, str | None]:
    """AlpacaEval's length-controlled win rate of A for one seed, with alpaca-eval's own GLM code.

    AlpacaEval 2.0 regresses the preference on tanh(standardized length difference), an instruction-difficulty
    term fitted on its own 805 instructions, and a model term, then predicts at zero length difference. Our
    prompts are not AlpacaEval's, so we use its `length_controlled_minimal` formula (no difficulty term).
    Returns (rate, None) or (None, reason).
    """
    from alpaca_eval.metrics.glm_winrate import GLM_INFO, fit_LogisticRegressionCV, make_dmatrix_for_model

    decided = [j for j in rows if normalize_preference(j.preference) is not None]
    prefs = np.array([normalize_preference(j.preference) for j in decided])
    if len(decided) < 10 or len(set(prefs.tolist())) < 2:
        return None, f"needs at least 10 judged prompts with both outcomes (got {len(decided)})"
    import pandas as pd

    delta = np.array([j.len_a - j.len_b for j in decided], dtype=float)
    std = delta.std(ddof=1)
    glm = GLM_INFO["length_controlled_minimal"]
    train = pd.DataFrame(
        {
            "preference": 2.0 - prefs,  # probability that A wins: 1, 0.5 for a tie, 0
            "std_delta_len": delta / std if std > 0 else delta * 0,
            "not_gamed_baseline": True,
        }
    )
    test = train[["not_gamed_baseline"]].assign(std_delta_len=0.0)
    try:
        with warnings.catch_warnings():  # scikit-learn deprecation and convergence notices
            warnings.simplefilter("ignore")
            x_train, x_test = make_dmatrix_for_model(train, test, formula=glm["formula"])
            model = fit_LogisticRegressionCV(x_train, "preference", is_ytrue_proba=True, **glm["kwargs"])
        return float(model.predict_proba(x_test)[:, 1].mean()), None
    except Exception as e:  # a degenerate fit (tiny samples) must not sink the judge step
        return None, f"GLM fit failed: {type(e).__name__}: {e}"


@dataclass
class PairResult:
    """Everything `result.json` holds for one judged pair."""

    seeds: dict[str, SeedCounts]
    win_rate_a: float | None
    seed_std: float | None
    ci95: list[float] | None
    lc_win_rate_a: float | None = None
    lc_reason: str | None = None
    lengths: dict[str, dict[str, float]] = field(default_factory=dict)
    bootstrap: dict[str, int] = field(default_factory=dict)  # how ci95 was drawn: resamples, seed

    def to_dict(self) -> dict:
        return {
            "seeds": {s: c.to_dict() for s, c in self.seeds.items()},
            "win_rate_a": self.win_rate_a,
            "seed_std": self.seed_std,
            "ci95": self.ci95,
            "lc_win_rate_a": self.lc_win_rate_a,
            "lc_reason": self.lc_reason,
            "lengths": self.lengths,
            "bootstrap": self.bootstrap,
        }


def summarize(
    per_seed: Mapping[str, Sequence[Judgment]], bootstrap: int = 1000, bootstrap_seed: int = 0, lc: bool = True
) -> PairResult:
    """Per-seed counts, the mean win rate, its spread and interval, lengths and the length-controlled rate."""
    counts = {s: count(j.preference for j in rows) for s, rows in per_seed.items()}
    result = PairResult(
        seeds=counts,
        win_rate_a=mean_win_rate(list(counts.values())),
        seed_std=seed_std(list(counts.values())),
        ci95=bootstrap_ci(per_seed, bootstrap, bootstrap_seed),
        bootstrap={"resamples": bootstrap, "seed": bootstrap_seed},
    )
    all_rows = [j for rows in per_seed.values() for j in rows]
    result.lengths = {
        "a": length_stats([j.len_a for j in all_rows]),
        "b": length_stats([j.len_b for j in all_rows]),
    }
    if lc:
        rates, reasons = [], []
        for rows in per_seed.values():
            rate, reason = length_controlled_win_rate(rows)
            if rate is None:
                reasons.append(reason)
            else:
                rates.append(rate)
        if rates and not reasons:
            result.lc_win_rate_a = sum(rates) / len(rates)
        else:
            result.lc_reason = reasons[0] if reasons else "no seeds"
    return result


def percent(rate: float | None) -> str:
    """A win rate as the paper prints it (one decimal, in %), or n/a."""
    return "n/a" if rate is None else f"{100 * rate:.1f}"
