"""Loading and normalising instruction datasets: LIMA's single-turn filter, mosaicml passthrough,
seeded subsets, mixtures; local files in the hub datasets' schemas go through `datasets.load_dataset`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limit.data.datasets import load_dataset_arguments, load_source, mix, subset
from limit.data.template import PREAMBLE, apply_template
from limit.errors import LimitError
from limit.execution.locations import local_path
from limit.spec.study import Source

LIMA = Source(jsonl="fixture:tiny/lima.jsonl", conversations="conversations", templated=False)
DOLLY = Source(jsonl="fixture:tiny/dolly_hhrlhf.jsonl")


def lines(location: str) -> list[dict]:
    return [json.loads(line) for line in local_path(location).read_text().splitlines() if line.strip()]


def test_lima_keeps_single_turn_rows_and_templates_them(tmp_path: Path):
    raw = lines(LIMA.jsonl)
    single = [r for r in raw if len(r["conversations"]) == 2]
    assert len(single) < len(raw)  # the fixture has multi-turn rows to drop

    rows, dropped = load_source(LIMA, cache_dir=tmp_path)

    assert dropped == len(raw) - len(single)
    assert [r["prompt"] for r in rows] == [apply_template(r["conversations"][0]) for r in single]
    assert [r["response"] for r in rows] == [r["conversations"][1] for r in single]
    assert [r["source"] for r in rows] == [r["source"] for r in single]


def test_mosaic_prompts_pass_through_untouched(tmp_path: Path):
    raw = lines(DOLLY.jsonl)

    rows, dropped = load_source(DOLLY, cache_dir=tmp_path)

    assert dropped == 0
    assert [r["prompt"] for r in rows] == [r["prompt"] for r in raw]
    assert all(r["prompt"].count(PREAMBLE) == 1 for r in rows)  # not templated twice
    assert {r["source"] for r in rows} == {DOLLY.jsonl}  # no source column: the dataset names the rows


def test_hub_id_path_reads_a_dataset_folder_in_the_hub_schema(tmp_path: Path):
    """`hf:` goes through load_dataset(id, split=...); a local folder in GAIR/lima's layout stands in for the hub."""
    folder = tmp_path / "lima"
    folder.mkdir()
    turns = [["Say hi.", "Hi!"], ["Q", "A", "Q2", "A2"], ["Count to two.", "One, two."]]
    (folder / "train.jsonl").write_text("".join(json.dumps({"conversations": t, "source": "x"}) + "\n" for t in turns))

    rows, dropped = load_source(Source(hf=str(folder), conversations="conversations", templated=False), tmp_path)

    assert dropped == 1
    assert [r["response"] for r in rows] == ["Hi!", "One, two."]


def test_hub_sources_reach_load_dataset_as_hub_ids_or_hub_files():
    assert load_dataset_arguments(Source(hf="mosaicml/dolly_hhrlhf")) == (
        "mosaicml/dolly_hhrlhf",
        {"name": None, "revision": None, "split": "train"},
    )
    # GAIR/lima ships a loading script, which `datasets` no longer runs: read its jsonl from the hub instead.
    assert load_dataset_arguments(Source(hf="GAIR/lima", data_files="train.jsonl", conversations="c")) == (
        "json",
        {"data_files": {"train": "hf://datasets/GAIR/lima@main/train.jsonl"}, "split": "train"},
    )


def test_malformed_local_file_is_a_one_line_error(tmp_path: Path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "p", "response": \n')
    with pytest.raises(LimitError, match=r"bad.jsonl \(split train\): cannot load"):
        load_source(Source(jsonl=str(path)), tmp_path)


def test_untemplated_prompt_field_gets_the_template(tmp_path: Path):
    path = tmp_path / "plain.jsonl"
    path.write_text(json.dumps({"instruction": "Add 2 and 2.", "output": "4"}) + "\n")

    rows, _ = load_source(Source(jsonl=str(path), prompt="instruction", response="output", templated=False), tmp_path)

    assert rows == [{"prompt": apply_template("Add 2 and 2."), "response": "4", "source": str(path)}]


def test_missing_field_names_the_dataset_and_field(tmp_path: Path):
    with pytest.raises(LimitError, match=r"dolly_hhrlhf.jsonl: no field 'instruction'"):
        load_source(Source(jsonl=DOLLY.jsonl, prompt="instruction"), tmp_path)


def test_missing_file_is_a_one_line_error(tmp_path: Path):
    with pytest.raises(LimitError, match="file not found"):
        load_source(Source(jsonl=str(tmp_path / "nope.jsonl")), tmp_path)


ROWS = [{"prompt": f"p{i}", "response": f"r{i}", "source": "s"} for i in range(50)]


def test_subset_is_seeded_and_deterministic():
    first = subset(ROWS, 10, seed=17, label="d")
    assert first == subset(ROWS, 10, seed=17, label="d")
    assert first != subset(ROWS, 10, seed=18, label="d")
    assert len({r["prompt"] for r in first}) == 10  # without replacement
    assert first == sorted(first, key=lambda r: int(r["prompt"][1:]))  # source order kept
    # Pinned: a seeded Mersenne Twister draws the same rows on every machine.
    assert [r["prompt"] for r in subset(ROWS, 3, seed=17, label="d")] == ["p5", "p13", "p45"]


def test_subsets_of_one_seed_are_nested():
    small, large = subset(ROWS, 5, seed=17, label="d"), subset(ROWS, 20, seed=17, label="d")
    assert all(row in large for row in small)


def test_subset_larger_than_its_source_is_an_error():
    with pytest.raises(LimitError, match=r"dataset instruct-v1: subset.sample: 51 rows asked, it has 50"):
        subset(ROWS, 51, seed=1, label="instruct-v1")


def test_mixture_is_concatenation_in_spec_order():
    a = [{"prompt": "a", "response": "1", "source": "A"}] * 3
    b = [{"prompt": "b", "response": "2", "source": "B"}] * 2
    assert mix([a, b]) == a + b
    assert mix([b, a]) == b + a
