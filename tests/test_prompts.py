"""Judge prompt sets in the hub datasets' schemas and the authors' release format: raw instruction for the
judge, templated prompt for the model, never templated twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limit.cli import main as cli
from limit.costs import CHARS_PER_TOKEN
from limit.data.prompts import count_prompts, instruction_of, load_prompts, prompt_tokens
from limit.data.template import apply_template
from limit.errors import LimitError
from limit.spec.study import PromptSet


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_lima_test_schema_takes_the_first_turn_and_templates_it(tmp_path: Path):
    rows = [{"conversations": ["What is 2+2?"], "source": "x"}, {"conversations": ["Hi?", "Hello"], "source": "y"}]
    prompts = load_prompts(PromptSet(jsonl=write_jsonl(tmp_path / "lima.jsonl", rows), field="conversations"))
    assert [p.instruction for p in prompts] == ["What is 2+2?", "Hi?"]
    assert prompts[0].prompt == apply_template("What is 2+2?")
    assert [p.prompt_id for p in prompts] == ["0000", "0001"]


def test_instruct_v3_schema_is_already_templated(tmp_path: Path):
    templated = apply_template("Name three rivers.")
    rows = [{"prompt": templated, "response": "Nile", "source": "dolly"}] * 3
    spec = PromptSet(jsonl=write_jsonl(tmp_path / "v3.jsonl", rows), field="prompt", templated=True, limit=2)
    prompts = load_prompts(spec)
    assert len(prompts) == 2
    assert prompts[0].prompt == templated and prompts[0].instruction == "Name three rivers."


def test_instruction_of_accepts_both_release_spellings():
    lima = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    assert instruction_of(f"{lima}\n### Instruction:\nline one\nline two\n### Response:\n") == "line one\nline two"
    assert instruction_of(f"{lima}\n\n### Instruction\nQ?\n\n### Response:\n") == "Q?"
    assert instruction_of("not templated") == "not templated"


def test_release_files_split_into_300_prompts_each(shared: Path):
    for name in ("lima_test_prompts.txt", "instructv3_test_prompts.txt"):
        prompts = load_prompts(PromptSet(release_txt=str(shared / "limit_release" / "test_prompts" / name)))
        assert len(prompts) == 300
        assert all(p.prompt.rstrip().endswith("### Response:") for p in prompts)
        assert all(p.instruction and "### " not in p.instruction for p in prompts)


def test_bad_prompt_sets_are_one_line_errors(tmp_path: Path):
    with pytest.raises(LimitError, match="file not found"):
        load_prompts(PromptSet(jsonl=str(tmp_path / "missing.jsonl"), field="prompt"))
    with pytest.raises(LimitError, match="no 'prompt'"):
        load_prompts(PromptSet(jsonl=write_jsonl(tmp_path / "x.jsonl", [{"text": "a"}]), field="prompt"))


def test_judge_pair_and_reproduce_bad_input_exit_2(tmp_path: Path, capsys):
    a = tmp_path / "a.json"
    a.write_text(json.dumps([{"instruction": "q", "output": "x"}]))
    b = tmp_path / "b.json"
    b.write_text(json.dumps([]))
    assert cli(["judge-pair", "--a", str(a), "--b", str(b), "--out", str(tmp_path / "o.json")]) == 2
    assert cli(["reproduce-winrates", "--release-dir", str(tmp_path / "nowhere")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[0].startswith("limit: error: --b:") and "paired by position" in errors[0]
    assert errors[1].startswith("limit: error: --release-dir:")
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("templated", [False, True])
def test_planned_prompt_tokens_are_the_loaded_prompts_characters(tmp_path: Path, templated: bool):
    rows = [{"conversations": ["What is 2+2?"]}, {"conversations": ["Name a prime.", "7"]}, {"conversations": ["x"]}]
    spec = PromptSet(jsonl=write_jsonl(tmp_path / "p.jsonl", rows), field="conversations", templated=templated, limit=2)
    loaded = load_prompts(spec)
    assert prompt_tokens(spec) == sum(len(p.prompt) for p in loaded) / len(loaded) / CHARS_PER_TOKEN
    assert count_prompts(spec) == 2


def test_a_hub_prompt_set_is_sized_by_its_expect_and_limit():
    expect = {"rows": 300, "tokens_mean": 65}
    assert count_prompts(PromptSet(hf="GAIR/lima", expect=expect)) == 300
    assert count_prompts(PromptSet(hf="GAIR/lima", expect=expect, limit=100)) == 100
    assert prompt_tokens(PromptSet(hf="GAIR/lima", expect=expect)) == 65
    assert count_prompts(PromptSet(hf="GAIR/lima")) is None and prompt_tokens(PromptSet(hf="GAIR/lima")) is None
    # a planning hint: the generate step's key does not move with it
    assert PromptSet(hf="GAIR/lima", expect=expect).model_dump() == PromptSet(hf="GAIR/lima").model_dump()
