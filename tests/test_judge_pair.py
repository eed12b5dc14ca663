"""`limit judge-pair` on generate's responses.jsonl: paired by seed and prompt id, an alpaca_eval-style
leaderboard on the console, and alpaca-eval's own logging in a file beside OUT, never on the console."""

from __future__ import annotations

import json
from pathlib import Path

from limit.cli import main as cli
from limit.execution.io import write_jsonl
from limit.judge.ranking import FIRST_WINS, SECOND_WINS
from limit.judge.replay_server import JudgeServer, Reply


def responses(path: Path, side: str) -> Path:
    rows = [
        {
            "prompt_id": f"p{i}",
            "instruction": f"Question number {i}: what is {i} plus {i}?",
            "prompt": f"### Instruction:\nQuestion number {i}\n### Response:\n",
            "output": f"GOOD answer {2 * i}" if side == "a" else f"bad {i}",
            "seed": seed,
            "model": f"model-{side}",
        }
        for seed in (1, 2)
        for i in range(6)
    ]
    write_jsonl(rows, path)
    return path


def good_or_garbage(instruction: str, shown_1: str, shown_2: str) -> Reply:
    if instruction.startswith("Question number 5"):
        return Reply("Both answers have merits; I cannot decide.")  # unparseable: alpaca-eval logs an ERROR
    return Reply(FIRST_WINS if shown_1.startswith("GOOD") else SECOND_WINS)


def test_judge_pair_on_responses_jsonl_prints_a_leaderboard_and_keeps_library_noise_off_the_console(tmp_path, capfd):
    a, b = responses(tmp_path / "a.jsonl", "a"), responses(tmp_path / "b.jsonl", "b")
    out = tmp_path / "out.json"
    with JudgeServer(good_or_garbage) as server:
        flags = ["--base-url", server.base_url, "--retry-wait", "0", "--max-retries", "0", "--bootstrap", "20"]
        flags += ["--max-failure-rate", "0.2"]  # one unparseable answer per seed is reported, not fatal
        assert cli(["judge-pair", "--a", str(a), "--b", str(b), "--out", str(out), *flags]) == 0
    console = capfd.readouterr()
    result = json.loads(out.read_text())
    assert set(result["seeds"]) == {"1", "2"}
    assert (result["wins_a"], result["wins_b"], result["failures"]) == (10, 0, 2)  # failures are not losses
    lines = console.out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model"))
    assert lines[header].split()[1:3] == ["win_rate", "95%"]
    # rows named as generate named the models, not by their files
    assert lines[header + 1].split()[:2] == ["model-a", "100.0"] and lines[header + 2].split()[:2] == ["model-b", "0.0"]
    assert "ties 0, failures 2 (excluded); 2 seed(s)" in console.out
    assert "manually fix" not in console.out + console.err and "ERROR" not in console.err
    # the console has the project's progress, a line per seed; what libraries print goes to the log
    assert [line.split(" (")[0] for line in console.err.splitlines() if "seeds judged" in line] == [
        "seeds judged: 1/2 seed 1",
        "seeds judged: 2/2 seed 2",
    ]
    assert "judge: seed 1: 6 pairs judged" in out.with_suffix(".log").read_text()
    assert "manually fix the score pair" in out.with_suffix(".log").read_text()
