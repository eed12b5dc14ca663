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


def test_holm_and_benjamini_hochberg():
    from limit.stats.adjust import adjust

    raw = [0.01, 0.04, None, 0.03, 0.5]
    # Holm by hand, smallest first: 4 x 0.01, 3 x 0.03, 2 x 0.04 (kept monotone), 1 x 0.5
    assert adjust(raw) == pytest.approx([0.04, 0.09, None, 0.09, 0.5])
    bh = adjust(raw, "bh")
    known = [p for p in raw if p is not None]
    assert [p for p in bh if p is not None] == pytest.approx(list(scipy_stats.false_discovery_control(known)))
    assert adjust([None]) == [None] and adjust([0.9, 0.8]) == [1.0, 1.0] and adjust([0.9, 0.8], "bh") == [0.9, 0.9]


def test_bradley_terry_fits_a_star_exactly_and_recovers_known_strengths():
    from limit.stats.ranking import bradley_terry, kendall_tau, star_center, strengths

    edges = [("c", "x"), ("c", "y"), ("z", "c")]
    rates = np.array([0.6, 0.8, 0.3])
    assert star_center(edges) == "c" and star_center(edges[:1]) == "x"  # one pair: against its B
    assert star_center([("a", "b"), ("c", "d")]) is None
    found, center = strengths(["c", "x", "y", "z"], edges, rates)
    assert center == "c" and found[:, 0].tolist() == pytest.approx([0.5, 0.4, 0.2, 0.3])
    s = bradley_terry(["c", "x", "y", "z"], edges, rates)[:, 0]
    fitted = [1 / (1 + np.exp(-(s[0] - s[1]))), 1 / (1 + np.exp(-(s[0] - s[2]))), 1 / (1 + np.exp(-(s[3] - s[0])))]
    assert fitted == pytest.approx(rates.tolist(), abs=1e-3)  # a tree: every pair fitted (up to the ridge)

    truth = np.array([1.0, 0.0, -1.0])
    triangle = [("a", "b"), ("b", "c"), ("a", "c")]
    p = [1 / (1 + np.exp(-(truth[i] - truth[j]))) for i, j in ((0, 1), (1, 2), (0, 2))]
    found, center = strengths(["a", "b", "c"], triangle, np.array(p))
    assert center is None and found[:, 0].tolist() == pytest.approx(truth.tolist(), abs=1e-2)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1) and kendall_tau([1, 1], [1, 2]) is None
