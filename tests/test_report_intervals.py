"""The report's interval arithmetic on small fixed data: point estimates by hand, the seeded bootstraps against
direct numpy computations, and which differences count as distinguishable."""

from __future__ import annotations

import numpy as np
import pytest

from limit.gauntlet.benchmarks import suite
from limit.gauntlet.scoring import aggregate, average_weights, rescale
from limit.report.stats import gauntlet_difference, paired_rows, spread, win_rate_difference, win_rate_interval
from limit.stats.bootstrap import Outcomes, interval, win_rate_draws

TINY = suite("tiny")
ROWS_A = {
    "tiny_jeopardy": [1, 1, 0, 0],  # random baseline 0, world knowledge (2 benchmarks)
    "tiny_arc": [1, 0, 0, 0],  # 0.25, world knowledge
    "tiny_copa": [1, 1, 1, 1],  # 0.5, commonsense reasoning (alone)
    "tiny_winograd": [1, 0, 1, 0],
    "tiny_arithmetic": [0, 0, 1, 1],
    "tiny_boolq": [1, 1, 0, 1],
}
ROWS_B = ROWS_A | {"tiny_jeopardy": [0, 1, 0, 0], "tiny_arc": [0, 0, 0, 0], "tiny_copa": [1, 1, 0, 0]}


def as_rows(values: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    return {name: {i: float(v) for i, v in enumerate(row)} for name, row in values.items()}


def gauntlet_average(values: dict[str, list[int]]) -> float:
    results = {b.name: {"score": rescale(np.mean(values[b.name]), b.random_baseline)} for b in TINY}
    return aggregate(TINY, results)["average"]


def test_the_paired_gauntlet_difference_by_hand():
    # mean row differences 0.25 (jeopardy), 0.25 (arc), 0.5 (copa), rescaled and averaged:
    by_hand = 0.25 / 1 / 2 / 5 + 0.25 / 0.75 / 2 / 5 + 0.5 / 0.5 / 1 / 5
    assert by_hand == pytest.approx(0.2583333, abs=1e-6)
    assert gauntlet_average(ROWS_A) - gauntlet_average(ROWS_B) == pytest.approx(by_hand)
    found = gauntlet_difference(TINY, as_rows(ROWS_A), as_rows(ROWS_B), reported=by_hand)
    assert found["difference"] == pytest.approx(by_hand)
    low, high = found["ci95"]
    assert low <= by_hand <= high


def test_the_gauntlet_bootstrap_matches_numpy_resampling_rows():
    """Drawn the documented way (benchmarks in name order, one multinomial over each benchmark's distinct row
    differences), and, in distribution, like resampling the rows themselves."""
    resamples, weights = 1000, average_weights(TINY)
    rng = np.random.default_rng(0)
    direct = np.zeros(resamples)
    for name in sorted(weights):
        d = np.array(ROWS_A[name], float) - np.array(ROWS_B[name], float)
        values, counts = np.unique(d, return_counts=True)
        direct += weights[name] * (rng.multinomial(len(d), counts / len(d), size=resamples) @ values) / len(d)
    reported = gauntlet_average(ROWS_A) - gauntlet_average(ROWS_B)
    found = gauntlet_difference(TINY, as_rows(ROWS_A), as_rows(ROWS_B), reported)
    assert found["ci95"] == pytest.approx([np.percentile(direct, 2.5), np.percentile(direct, 97.5)])

    rng = np.random.default_rng(1)
    by_rows = sum(
        weights[name] * (np.array(ROWS_A[name], float) - ROWS_B[name])[rng.integers(0, 4, (40_000, 4))].mean(axis=1)
        for name in sorted(weights)
    )
    assert found["ci95"] == pytest.approx(interval(by_rows), abs=0.02)


def test_a_difference_is_distinguishable_only_when_its_interval_excludes_zero():
    same = gauntlet_difference(TINY, as_rows(ROWS_A), as_rows(ROWS_A), reported=0.0)
    assert same == {"difference": 0.0, "ci95": [0.0, 0.0], "distinguishable": False, "p_value": 1.0}
    better = {name: [1] * 40 for name in ROWS_A}
    worse = {name: [1] * 20 + [0] * 20 for name in ROWS_A}
    reported = gauntlet_average(better) - gauntlet_average(worse)
    found = gauntlet_difference(TINY, as_rows(better), as_rows(worse), reported)
    assert found["distinguishable"] and found["ci95"][0] > 0
    assert paired_rows({0: 1.0, 1: 0.0, 5: 1.0}, {1: 1.0, 0: 1.0}).tolist() == [0.0, -1.0]  # shared rows only
    assert gauntlet_difference(TINY, as_rows(ROWS_A), {}, reported=0.1) is None  # no details: no interval


ANNOTATIONS = [  # seed 1: A wins p1, p2, loses p3, ties p4; seed 2: A wins p1, loses p2, p3, fails p4
    {"seed": "1", "prompt_id": "p1", "winner": "a"},
    {"seed": "1", "prompt_id": "p2", "winner": "a"},
    {"seed": "1", "prompt_id": "p3", "winner": "b"},
    {"seed": "1", "prompt_id": "p4", "winner": "tie"},
    {"seed": "2", "prompt_id": "p1", "winner": "a"},
    {"seed": "2", "prompt_id": "p2", "winner": "b"},
    {"seed": "2", "prompt_id": "p3", "winner": "b"},
    {"seed": "2", "prompt_id": "p4", "winner": None},
]


def outcomes(rows: list[dict]) -> Outcomes:
    return Outcomes.from_rows((r["seed"], r["prompt_id"], r["winner"]) for r in rows)


def test_the_win_rate_bootstrap_matches_a_direct_loop():
    pair = outcomes(ANNOTATIONS)
    assert (pair.seeds, pair.prompts) == (("1", "2"), ("p1", "p2", "p3", "p4"))
    matrix = pair.wins - pair.losses
    assert matrix.tolist() == [[1, 1, -1, 0], [1, -1, -1, 0]]
    found = win_rate_interval(pair)
    assert found["win_rate"] == pytest.approx((2 / 3 + 1 / 3) / 2)  # the mean of the seeds' rates, by hand
    assert found["difference"] == pytest.approx(0.0)

    rng = np.random.default_rng(0)  # the documented draws: prompt counts, then seed indices
    counts = rng.multinomial(4, [0.25] * 4, size=1000)
    picks = rng.integers(0, 2, size=(1000, 2))
    direct = []
    for r in range(1000):
        rates = []
        for s in picks[r]:
            wins = sum(c for c, v in zip(counts[r], matrix[s], strict=True) if v == 1)
            losses = sum(c for c, v in zip(counts[r], matrix[s], strict=True) if v == -1)
            if wins + losses:
                rates.append(wins / (wins + losses))
        if rates:
            direct.append(np.mean(rates) - 0.5)
    assert found["ci95"] == pytest.approx([np.percentile(direct, 2.5), np.percentile(direct, 97.5)])
    assert not found["distinguishable"]
    assert [len(d) for d in win_rate_draws([pair, pair])] == [1000, 1000]


def test_a_paired_win_rate_difference_cancels_what_both_share():
    pair = outcomes(ANNOTATIONS)
    same = win_rate_difference(pair, pair)
    assert same == {"difference": 0.0, "ci95": [0.0, 0.0], "distinguishable": False, "p_value": 1.0}
    names = (("1", "2"), tuple(str(i) for i in range(40)))
    always = Outcomes(*names, np.ones((2, 40)), np.zeros((2, 40)))
    never = Outcomes(*names, np.zeros((2, 40)), np.ones((2, 40)))
    found = win_rate_difference(always, never)
    assert found == {"difference": 1.0, "ci95": [1.0, 1.0], "distinguishable": True, "p_value": 0.0}


def test_replicate_spread():
    assert spread([0.1, 0.3, None]) == {"mean": pytest.approx(0.2), "std": pytest.approx(0.1414214), "n": 2}
    assert spread([0.5]) == {"mean": 0.5, "std": None, "n": 1}
    assert spread([]) == {"mean": None, "std": None, "n": 0}


def test_the_gauntlet_interval_follows_its_seed():
    rows_a = {b.name: dict(enumerate([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])) for b in TINY}
    rows_b = {b.name: dict(enumerate([0.0, 0.0, 1.0, 0.0, 1.0, 0.0])) for b in TINY}
    first = gauntlet_difference(TINY, rows_a, rows_b, reported=0.1, seed=1)
    assert first == gauntlet_difference(TINY, rows_a, rows_b, reported=0.1, seed=1)
    assert first["ci95"] != gauntlet_difference(TINY, rows_a, rows_b, reported=0.1, seed=2)["ci95"]
