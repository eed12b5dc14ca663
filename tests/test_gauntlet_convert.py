"""Converters from the public datasets into gauntlet files, fed local files in each hub dataset's schema."""

from __future__ import annotations

import json
from pathlib import Path

from limit.cli import main
from limit.gauntlet.benchmarks import suite
from limit.gauntlet.convert import CONVERTERS, convert
from limit.gauntlet.fewshot import read_rows
from limit.gauntlet.tasks import REQUIRED_FIELDS

# A few rows each, in the schema of cais/mmlu, Rowan/hellaswag, rajpurkar/squad, tasksource/bigbench.
HUB_ROWS = {
    "mmlu": [
        {"question": f"What is {i} + {i}?", "subject": subject, "choices": [str(i), str(2 * i), "0", "1"], "answer": 1}
        for i, subject in enumerate(["abstract_algebra", "abstract_algebra", "anatomy", "virology"], start=2)
    ],
    "hellaswag": [
        {
            "ind": i,
            "activity_label": "Roof shingle removal",
            "ctx_a": "A man is sitting on a roof.",
            "ctx_b": "he",
            "ctx": "A man is sitting on a roof. he",
            "endings": ["starts pulling up roofing.", "is using wrap [title] to wrap skis.", "eats.", "sleeps."],
            "source_id": "x",
            "split": "val",
            "split_type": "indomain",
            "label": str(i % 4),
        }
        for i in range(4)
    ],
    "squad": [
        {
            "id": str(i),
            "title": "Denver",
            "context": " The Broncos won Super Bowl 50. ",
            "question": f"Who won Super Bowl 5{i}?",
            "answers": {"text": ["the Broncos", "Broncos"], "answer_start": [1, 5]},
        }
        for i in range(4)
    ],
    "bigbench_elementary_math_qa": [
        {
            "idx": i,
            "inputs": f"Q: What is {i} times 3?\nA:",
            "targets": [str(3 * i)],
            "multiple_choice_targets": [str(3 * i), str(3 * i + 1), "7"],
            "multiple_choice_scores": [1, 0, 0],
        }
        for i in range(1, 5)
    ],
}


def write_hub_samples(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in HUB_ROWS.items():
        paths[name] = folder / f"{name}.hub.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def test_converters_write_gauntlet_format(tmp_path):
    sources = write_hub_samples(tmp_path / "hub")
    out = tmp_path / "converted"
    benches = {b.name: b for b in suite("v0", list(CONVERTERS))}
    for name, bench in benches.items():
        target = convert(name, out, str(sources[name]))
        assert target == out / bench.file
        assert len(read_rows(target, REQUIRED_FIELDS[bench.kind])) == 4

    mmlu = read_rows(out / benches["mmlu"].file)
    assert mmlu[0] == {
        "query": "What is 2 + 2?\n(A) 2 (B) 4 (C) 0 (D) 1",
        "choices": ["A", "B", "C", "D"],
        "gold": 1,
        "category": "abstract_algebra",
    }
    hellaswag = read_rows(out / benches["hellaswag"].file)
    assert hellaswag[3]["query"] == "Roof shingle removal: A man is sitting on a roof. He"
    assert hellaswag[3]["gold"] == 3 and hellaswag[0]["choices"][1] == "is using wrap. to wrap skis."
    squad = read_rows(out / benches["squad"].file)
    assert squad[1] == {
        "context": "Context: The Broncos won Super Bowl 50.\nQuestion: Who won Super Bowl 51?\nAnswer:",
        "continuation": "the Broncos",
    }
    math = read_rows(out / benches["bigbench_elementary_math_qa"].file)
    assert math[1] == {"query": "Q: What is 2 times 3?\nA:", "choices": ["6", "7", "7"], "gold": 0}


def test_convert_cli_errors_are_one_line(tmp_path, capsys):
    missing = tmp_path / "missing.jsonl"
    assert main(["gauntlet-convert", "squad", "--out", str(tmp_path), "--source", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"limit: error: --source: file not found: {missing}"
    assert main(["gauntlet-convert", "copa", "--out", str(tmp_path), "--source", "x"]) == 2
