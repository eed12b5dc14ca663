"""The paper's 12 win rates from the authors' released GPT-4 judgments: by arithmetic, and re-judged through
the real alpaca-eval + openai path against the replay judge (position randomization included)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from limit.commands import reproduce_winrates as reproduce_command
from limit.judge.release import find_comparisons, judgments
from limit.judge.winrate import count

PAPER = {  # SOURCE.md's table: (size, prompts, B) -> mean win rate of the LIMA model, %
    ("7B", "LIMA", "Instruct-v1"): 54.7,
    ("7B", "LIMA", "Instruct-v1-5k"): 59.1,
    ("7B", "LIMA", "Instruct-v1-5k+LIMA"): 34.9,
    ("30B", "LIMA", "Instruct-v3"): 60.7,
    ("30B", "LIMA", "Instruct-v3-1k"): 79.5,
    ("30B", "LIMA", "Instruct-v3-1k+LIMA"): 53.3,
    ("7B", "Instruct-v3", "Instruct-v1"): 57.8,
    ("7B", "Instruct-v3", "Instruct-v1-5k"): 56.9,
    ("7B", "Instruct-v3", "Instruct-v1-5k+LIMA"): 44.1,
    ("30B", "Instruct-v3", "Instruct-v3"): 71.7,
    ("30B", "Instruct-v3", "Instruct-v3-1k"): 85.1,
    ("30B", "Instruct-v3", "Instruct-v3-1k+LIMA"): 66.9,
}


def reproduce(release: Path, out: Path, **kwargs) -> tuple[int, list[dict]]:
    args = argparse.Namespace(
        release_dir=release,
        via_replay_judge=False,
        only=None,
        bootstrap=50,
        concurrency=8,
        json=out,
        log=out.with_suffix(".log"),
    )
    for key, value in kwargs.items():
        setattr(args, key, value)
    rc = reproduce_command.main(args)
    return rc, json.loads(out.read_text())


def test_the_twelve_win_rates_from_the_released_files(shared: Path, tmp_path: Path, capsys):
    rc, rows = reproduce(shared / "limit_release", tmp_path / "table.json")
    assert rc == 0
    got = {(r["size"], r["prompts"], r["b"]): round(100 * r["win_rate_a"], 1) for r in rows}
    assert got == PAPER
    assert all(len(r["seeds"]) == 3 and r["ci95"][0] < r["win_rate_a"] < r["ci95"][1] for r in rows)
    printed = capsys.readouterr().out
    assert printed.count(" ok |") == 12 and "DIFFERS" not in printed


def test_judge_pair_on_released_outputs_with_duplicates(shared: Path, tmp_path: Path):
    """`limit judge-pair` pairs by position (duplicated instructions and all) and undoes alpaca-eval's swaps."""
    from limit.commands import judge_pair as pair_command
    from limit.judge.replay_server import ReplayJudgeServer

    comparison = next(
        c for c in find_comparisons(shared / "limit_release") if c.label == "30B Instruct-v3: LIMA vs Instruct-v3"
    )
    rows = comparison.rows("2")[:60]
    assert len({r["instruction"] for r in rows}) < len(rows)  # the merge's duplicated instructions are in here
    a = [{"instruction": r["instruction"], "output": r["output_1"] or ""} for r in rows]
    b = [{"instruction": r["instruction"], "output": r["output_2"] or ""} for r in rows]
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    with ReplayJudgeServer(rows) as server:
        args = pair_command_args(tmp_path, server.base_url)
        assert pair_command.main(args) == 0
        assert server.shown_swapped > 0 and server.missing == 0
    out = json.loads((tmp_path / "out.json").read_text())
    released = count(r["preference"] for r in rows)
    assert (out["wins_a"], out["wins_b"], out["n"]) == (released.wins_a, released.wins_b, 60)
    assert out["win_rate_a"] == pytest.approx(released.win_rate_a)
    assert out["cost"]["tokens"] > 0 and out["cost"]["dollars"] > 0  # gpt-4-0613 has a known price
    assert len(out["annotations"]) == 60


def pair_command_args(tmp_path: Path, base_url: str) -> argparse.Namespace:
    from limit.cli import build_parser

    return build_parser("judge-pair").parse_args(
        [
            "judge-pair",
            *("--a", str(tmp_path / "a.json"), "--b", str(tmp_path / "b.json"), "--out", str(tmp_path / "out.json")),
            *("--seed", "2", "--base-url", base_url, "--retry-wait", "0", "--max-retries", "1", "--bootstrap", "50"),
        ]
    )


def test_all_twelve_through_the_replay_judge(shared: Path, tmp_path: Path, capfd):
    """All 10,800 released GPT-4 verdicts, re-asked through alpaca-eval's annotator and the openai client of a
    replay server, with alpaca-eval's position swaps: the same counts, so the paper's 12 numbers. The console
    gets the project's lines only (the libraries' bars and logging go to the log file)."""
    rc, rows = reproduce(shared / "limit_release", tmp_path / "table.json", via_replay_judge=True)
    assert rc == 0
    printed = capfd.readouterr()
    assert len(printed.out.splitlines()) + len(printed.err.splitlines()) < 100, printed.err[-2000:]
    assert {(r["size"], r["prompts"], r["b"]): round(100 * r["win_rate_a"], 1) for r in rows} == PAPER
    comparisons = {(c.size, c.prompts, c.b): c for c in find_comparisons(shared / "limit_release")}
    for row in rows:
        comparison = comparisons[(row["size"], row["prompts"], row["b"])]
        for seed, counts in row["seeds"].items():
            released = count(j.preference for j in judgments(comparison.rows(seed)))
            assert (counts["wins_a"], counts["wins_b"]) == (released.wins_a, released.wins_b), comparison.label
            assert counts["ties"] + counts["failures"] == released.ties + released.failures, comparison.label
