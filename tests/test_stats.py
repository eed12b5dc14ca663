"""limit.stats: the one win-rate bootstrap (against scipy.stats.bootstrap), p-values, adjusted p-values,
judge strengths and Kendall's tau."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from limit.judge.winrate import Judgment, bootstrap_ci
from limit.stats.bootstrap import Outcomes, interval, p_value, win_rate, win_rate_ci


def one_seed(prompts: int = 200) -> Outcomes:
    """A wins prompts 0, 3, 6, ...; ties every fifth of the rest; B wins the others."""
    winner = ["a" if i % 3 == 0 else ("tie" if i % 5 == 0 else "b") for i in range(prompts)]
    return Outcomes.from_rows(("1", f"{i:03d}", w) for i, w in enumerate(winner))


def test_one_seeds_interval_is_scipys_percentile_bootstrap_of_the_ratio():
    pair = one_seed()
    wins, losses = pair.wins[0], pair.losses[0]

    def ratio(w, lo, axis=-1):
        return w.sum(axis=axis) / (w.sum(axis=axis) + lo.sum(axis=axis))

    scipy_ci = scipy_stats.bootstrap(
        (wins, losses), ratio, paired=True, vectorized=True, method="percentile", n_resamples=20_000, random_state=1
    ).confidence_interval
    ours = win_rate_ci(pair, resamples=20_000, seed=0)
    assert win_rate(pair) == pytest.approx(ratio(wins, losses))
    assert ours == pytest.approx([scipy_ci.low, scipy_ci.high], abs=0.01)


def test_the_judge_steps_interval_is_the_stats_modules_from_the_same_judgments():
    preference = {"a": 1, "b": 2, "tie": 1.5}
    rows = {"2": [], "1": []}
    for seed in ("1", "2"):
        for i in range(30):
            winner = "a" if (i + int(seed)) % 3 else "b"
            rows[seed].append(Judgment(f"{i:02d}", preference[winner]))
    pair = Outcomes.from_rows((s, j.prompt_id, "a" if j.preference == 1 else "b") for s, js in rows.items() for j in js)
    assert pair.seeds == ("1", "2")  # string order, whatever order the judge step met them in
    assert bootstrap_ci(rows, resamples=500, seed=7) == win_rate_ci(pair, resamples=500, seed=7)
    assert bootstrap_ci(rows, resamples=500, seed=7) != bootstrap_ci(rows, resamples=500, seed=8)


def test_duplicated_prompts_count_each_time_and_move_together():
    pair = Outcomes.from_rows([("1", "p", "a"), ("1", "p", "a"), ("1", "q", "b")])
    assert pair.wins.tolist() == [[2, 0]] and win_rate(pair) == pytest.approx(2 / 3)


def test_bootstrap_p_values():
    assert p_value(np.array([1.0, 2.0, 3.0, 4.0])) == 0.0
    assert p_value(np.array([-1.0, 1.0, 2.0, 3.0])) == 0.5
    assert p_value(np.zeros(10)) == 1.0
    assert p_value(np.array([np.nan])) is None
    assert interval(np.array([np.nan, 1.0])) == [1.0, 1.0]
