"""generate step on a tiny MPT: the responses file contract, determinism per seed, token limits, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limit.data.prompts import Prompt, load_prompts
from limit.generation.sampling import TransformersSampler, token_budget
from limit.models.base import materialize_tiny
from limit.spec.study import Generation, PromptSet, TinyModel

GEN = {"seeds": [1, 2], "temperature": 0.9, "max_total_tokens": 96, "max_new_tokens": 12, "batch_size": 2}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(materialize_tiny(TinyModel(d_model=32, n_layers=1, n_heads=2), tmp_path_factory.mktemp("work")))


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    lines = ["Name a fruit.", "Write a haiku about rain.", "Why is the sea salty?", "word " * 120]
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in lines))
    return path


def test_token_budget_respects_both_limits():
    gen = Generation(max_total_tokens=100, max_new_tokens=30)
    assert token_budget(10, gen) == 30
    assert token_budget(80, gen) == 20
    assert token_budget(120, gen) == 0
    assert token_budget(10, Generation(max_total_tokens=100), context=40) == 30


def test_same_seed_same_responses_other_seed_other_responses(tiny_model: str, prompt_file: Path):
    prompts = load_prompts(PromptSet(jsonl=str(prompt_file), field="prompt"))[:3]
    sampler = TransformersSampler(tiny_model)
    gen = Generation(**GEN)
    first, again, other = (sampler.sample(prompts, gen, seed) for seed in (1, 1, 2))
    assert [s.output for s in first] == [s.output for s in again]
    assert [s.output for s in first] != [s.output for s in other]


def test_generate_step_writes_every_response_within_its_token_budget(
    tiny_model: str, prompt_file: Path, limit_env: Path
):
    from limit.runner import run_step

    inp = {
        "tags": {"run": "tiny-base"},
        "model": {"path": tiny_model},
        "prompts": {"jsonl": str(prompt_file), "field": "prompt"},
        "generation": GEN,
    }
    summary = run_step("generate", json.dumps(inp))
    out = next((limit_env / "artifacts" / "generate").iterdir())
    rows = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    assert summary["responses"] == len(rows) == 8 and summary["prompts_too_long"] == 2
    assert {r["seed"] for r in rows} == {1, 2}
    for row in rows:
        assert set(row) >= {"prompt_id", "instruction", "prompt", "output", "seed", "model", "checkpoint"}
        assert row["model"] == "tiny-base" and row["checkpoint"] is None
        assert row["prompt"].endswith("### Response:\n") and row["instruction"] in row["prompt"]
        budget = min(GEN["max_new_tokens"], GEN["max_total_tokens"] - row["prompt_tokens"])
        assert row["output_tokens"] <= max(budget, 0)
        if row["finish_reason"] == "prompt_too_long":
            assert row["output"] == "" and row["prompt_tokens"] > GEN["max_total_tokens"]


def test_a_seed_finished_by_a_killed_attempt_is_reused(tiny_model: str, tmp_path: Path):
    from limit.execution.context import StepContext
    from limit.execution.store import Store
    from limit.steps.generate import generate
    from limit.steps.inputs import GenerateInput

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Name a colour."}) + "\n")
    inp = GenerateInput(
        model={"path": tiny_model},
        prompts=PromptSet(jsonl=str(prompts), field="prompt"),
        generation=Generation(**GEN),
    )
    out = tmp_path / "out"
    (out / "seeds").mkdir(parents=True)
    earlier = Prompt("0000", "Name a colour.", "templated")
    row = {"prompt_id": earlier.prompt_id, "instruction": earlier.instruction, "prompt": earlier.prompt}
    row |= {"output": "FROM THE EARLIER ATTEMPT", "seed": 1, "output_tokens": 3, "prompt_tokens": 5}
    row |= {"finish_reason": "eos", "model": "m", "checkpoint": None}
    (out / "seeds" / "seed-1.jsonl").write_text(json.dumps(row) + "\n")
    store = Store(str(tmp_path / "artifacts"), tmp_path / "work")
    summary = generate(inp, StepContext(ref="generate/test", out=out, store=store))
    rows = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in rows] == [1, 2] and rows[0]["output"] == "FROM THE EARLIER ATTEMPT"
    assert summary["responses"] == 2


def test_failed_generations_end_the_step_retryable_and_only_they_are_sampled_again(
    tiny_model: str, prompt_file: Path, limit_env: Path, monkeypatch: pytest.MonkeyPatch
):
    """The first batch raises (as an out-of-memory GPU would): 2 of 4 responses failed, over the 2% allowed, so
    the step ends retryable with no manifest; the next attempt samples that batch only, and gets what an attempt
    without failures would have."""
    from limit.cli import main
    from limit.runner import run_step

    gen = {**GEN, "seeds": [1]}
    prompts = {"jsonl": str(prompt_file), "field": "prompt"}
    inp = json.dumps({"model": {"path": tiny_model}, "prompts": prompts, "generation": gen})
    expected = TransformersSampler(tiny_model).sample(
        load_prompts(PromptSet(jsonl=str(prompt_file), field="prompt")), Generation(**gen), 1
    )
    calls, errors = [], [RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")]
    generate_batch = TransformersSampler._generate

    def out_of_memory_once(self, *args):
        calls.append(args)
        if errors:
            raise errors.pop()
        return generate_batch(self, *args)

    monkeypatch.setattr(TransformersSampler, "_generate", out_of_memory_once)
    assert main(["step", "generate", "--input", inp]) == 75
    assert not list((limit_env / "artifacts").rglob("_manifest.json"))
    (partial,) = (limit_env / "artifacts" / "generate").glob("*.partial")
    failed = [json.loads(line) for line in (partial / "seeds" / "seed-1.jsonl").read_text().splitlines()]
    assert [r["finish_reason"] for r in failed].count("error") == 2 and "out of memory" in failed[0]["error"]

    calls.clear()
    summary = run_step("generate", inp)
    assert len(calls) == 1 and summary["failed_generations"] == 0
    rows = [json.loads(line) for line in (partial.with_suffix("") / "responses.jsonl").read_text().splitlines()]
    assert [r["output"] for r in rows] == [s.output for s in expected]


def test_the_largest_batch_runs_first_and_the_responses_do_not_depend_on_the_order(
    tiny_model: str, prompt_file: Path, monkeypatch: pytest.MonkeyPatch
):
    """Each batch has its own seed, so running the largest first (to fail fast where it cannot fit) gives the
    responses of the shortest-first order: sampling each batch alone (`only`) gives them too."""
    prompts = load_prompts(PromptSet(jsonl=str(prompt_file), field="prompt"))[:3]
    gen = Generation(**{**GEN, "batch_size": 1})
    sampler = TransformersSampler(tiny_model)
    shapes = []
    generate_batch = TransformersSampler._generate

    def spy(self, inputs, gen, max_new_tokens):
        shapes.append(inputs["input_ids"].shape[1] + max_new_tokens)
        return generate_batch(self, inputs, gen, max_new_tokens)

    monkeypatch.setattr(TransformersSampler, "_generate", spy)
    together = sampler.sample(prompts, gen, 1)
    assert shapes == sorted(shapes, reverse=True) and len(set(shapes)) > 1
    alone = [sampler.sample(prompts, gen, 1, only={i})[i] for i in range(len(prompts))]
    assert [s.output for s in together] == [s.output for s in alone]


def test_a_largest_batch_that_runs_out_of_memory_is_refused_in_one_line(
    tiny_model: str, prompt_file: Path, monkeypatch: pytest.MonkeyPatch
):
    import torch

    from limit.errors import LimitError

    def out_of_memory(self, *args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(TransformersSampler, "_generate", out_of_memory)
    prompts = load_prompts(PromptSet(jsonl=str(prompt_file), field="prompt"))[:3]
    with pytest.raises(LimitError, match=r"the largest batch \(2 prompts .* lower generation.batch_size"):
        TransformersSampler(tiny_model).sample(prompts, Generation(**GEN), 1)
