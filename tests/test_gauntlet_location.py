"""`llm-foundry@<commit>` gauntlet data: the studies name the full commit; a short one is refused in one line
naming the field, at plan time (no network then) and again in the pod, never fetched from a raw file host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limit.cli import main as limit_main
from limit.errors import LimitError
from limit.runner import parse_input
from limit.spec.study import list_studies, load_study

FULL = "be467aee1744566e46e9b993c1ff23ab01fe5c55"  # llm-foundry, 2023-11-06: the paper's gauntlet
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("study", list_studies())
def test_shipped_studies_name_full_commits(study: str) -> None:
    for location in load_study(study).gauntlet.locations:
        if location.kind == "llm-foundry":
            assert location.value == FULL


def test_plan_refuses_a_short_commit_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = (REPO / "workflows" / "studies" / "paper-7b.yaml").read_text()
    assert f"llm-foundry@{FULL}" in text
    spec = tmp_path / "short.yaml"
    spec.write_text(text.replace(f"llm-foundry@{FULL}", "llm-foundry@be467aee1"))
    assert limit_main(["plan", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{spec}:" in err and "gauntlet.data: 'llm-foundry@be467aee1'" in err
    assert err.endswith(f"llm-foundry@{FULL}")  # the full commit of a known short one


def test_the_step_refuses_a_short_commit_too() -> None:
    data = {"gauntlet": {"suite": "tiny", "data": "fixture:gauntlet,llm-foundry@abc1234"}, "model": {"hf": "m"}}
    with pytest.raises(LimitError, match=r"^step gauntlet --input: gauntlet.data: 'llm-foundry@abc1234': give the"):
        parse_input("gauntlet", json.dumps(data))
