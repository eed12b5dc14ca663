"""Win-rate arithmetic: ties and failures excluded, duplicates counted, seeds averaged, swaps undone."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from limit.judge.ranking import is_switched
from limit.judge.winrate import (
    Judgment,
    SeedCounts,
    bootstrap_ci,
    count,
    length_controlled_win_rate,
    mean_win_rate,
    normalize_preference,
    seed_std,
    summarize,
)


def test_preferences_in_every_spelling_the_release_files_use():
    assert [normalize_preference(v) for v in (1, "1.0", 2, "2", 1.5, 0, "0")] == [1, 1, 2, 2, 1.5, 1.5, 1.5]
    assert [normalize_preference(v) for v in (None, math.nan, -1, "-1", "None", 3, "x")] == [None] * 7


def test_ties_and_failures_are_excluded_never_losses():
    counts = count([1, 1, 1, 2, 1.5, 0, None, -1, math.nan])
    assert (counts.wins_a, counts.wins_b, counts.ties, counts.failures, counts.n) == (3, 1, 2, 3, 9)
    assert counts.win_rate_a == 0.75
    assert count([1.5, None]).win_rate_a is None


def test_duplicated_rows_count_each_time_as_in_the_paper():
    # the authors' merge duplicated some instructions; their numbers count every row
    assert count([1, 1, 2]).win_rate_a == pytest.approx(2 / 3)


def test_mean_over_seeds_and_spread():
    seeds = [SeedCounts(wins_a=6, wins_b=4), SeedCounts(wins_a=3, wins_b=7), SeedCounts(ties=5)]
    assert mean_win_rate(seeds) == pytest.approx(0.45)  # a seed with nothing decided is skipped
    assert seed_std(seeds) == pytest.approx(math.sqrt(((0.6 - 0.45) ** 2 + (0.3 - 0.45) ** 2) / 1))
    assert seed_std(seeds[:1]) is None


def test_bootstrap_interval_brackets_the_estimate_and_is_reproducible():
    rows = {
        "1": [Judgment(str(i), 1 if i % 3 else 2) for i in range(60)],
        "2": [Judgment(str(i), 1 if i % 2 else 2) for i in range(60)],
    }
    lo, hi = bootstrap_ci(rows, resamples=300, seed=0)
    estimate = mean_win_rate([count(j.preference for j in r) for r in rows.values()])
    assert lo < estimate < hi and hi - lo < 0.4  # the seeds' rates differ (2/3, 1/2): resampled seeds widen it
    assert bootstrap_ci(rows, resamples=300, seed=0) == [lo, hi]
    assert bootstrap_ci(rows, resamples=0) is None


def test_summary_holds_everything_the_report_reads():
    rows = {"1": [Judgment("p", 1, len_a=10, len_b=30), Judgment("q", None, 5, 5)]}
    out = summarize(rows, bootstrap=20).to_dict()
    assert out["seeds"]["1"] == {"wins_a": 1, "wins_b": 0, "ties": 0, "failures": 1, "n": 2, "win_rate_a": 1.0}
    assert out["win_rate_a"] == 1.0 and out["seed_std"] is None
    assert out["lengths"]["b"]["mean"] == 17.5
    assert out["lc_win_rate_a"] is None and "at least 10" in out["lc_reason"]


def test_length_controlled_rate_discounts_a_length_bias():
    # A wins mostly when its answer is the longer one: once length is controlled for, A is no better than B
    rows = [
        Judgment(
            str(i), (2 if i % 2 else 1) if i % 5 == 0 else (1 if i % 2 else 2), len_a=150 if i % 2 else 50, len_b=100
        )
        for i in range(80)
    ]
    raw = count(j.preference for j in rows).win_rate_a
    lc, reason = length_controlled_win_rate(rows)
    assert reason is None and raw == 0.5
    assert lc == pytest.approx(0.5, abs=0.1)
    longer_wins = [Judgment(str(i), 1 if i % 4 else 2, len_a=300, len_b=100) for i in range(80)]
    lc_long, _ = length_controlled_win_rate(longer_wins)
    assert lc_long < count(j.preference for j in longer_wins).win_rate_a


def test_swap_rule_matches_alpaca_evals_processor_and_differs_by_seed():
    from alpaca_eval.processors import RandomSwitchTwoColumnsProcessor

    instructions = [f"instruction {i}" for i in range(30)]
    df = pd.DataFrame({"instruction": instructions, "output_1": "a", "output_2": "b"})
    for seed in (1, 2, 3):
        processor = RandomSwitchTwoColumnsProcessor(
            two_columns_to_switch=["output_1", "output_2"],
            random_seed_columns=["instruction"],
            _switch_column="is_switched_outputs",
            seed=seed,
        )
        shown = processor.preprocess(df)
        assert shown["is_switched_outputs"].tolist() == [is_switched(i, seed) for i in instructions]
        # what the judge saw first is B exactly where the rule says so, and postprocess undoes it
        assert (shown["output_1"] == "b").tolist() == [is_switched(i, seed) for i in instructions]
    assert [is_switched(i, 1) for i in instructions] != [is_switched(i, 2) for i in instructions]
