"""`gauntlet.backend: packed` against lm-eval's own HFLM on the same tiny MPT, through lm-eval's evaluator: the
same per-request log-likelihoods (1e-4), greedy flags, token counts and composer predictions, for a
multiple-choice task with few-shot contexts and multi-token choices, a schema task and a language-modelling
task (the real v0 files where ../shared holds them, which the tiny model's 512 tokens truncate; the
fixtures otherwise), and the same tiny-suite scores."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from lm_eval.evaluator import evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from pydantic import ValidationError

from limit.errors import LimitError
from limit.execution.locations import parse_locations
from limit.gauntlet.benchmarks import suite
from limit.gauntlet.data import fetch_files
from limit.gauntlet.evaluate import build_tasks, run_gauntlet, score_samples
from limit.gauntlet.packed import PackedLM, group, pack
from limit.models.base import materialize_tiny
from limit.spec.study import GauntletSpec, TinyModel

TOLERANCE = 1e-4
ROWS = 8
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "gauntlet_data"
# (v0 benchmark used when ../shared holds it, fixture benchmark otherwise)
CASES = {
    "multiple_choice": ("arc_easy", "tiny_arc"),  # 10-shot, truncated to the tiny model's 512 tokens
    "multiple_choice_shared_context": (None, "tiny_arc"),  # 2-shot, short: every choice shares the context
    "schema": ("winogrande", "tiny_winograd"),
    "language_modeling": ("lambada_openai", "tiny_jeopardy"),
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(materialize_tiny(TinyModel(), tmp_path_factory.mktemp("work")))


@pytest.fixture(scope="module")
def models(tiny_model) -> tuple[HFLM, PackedLM]:
    """lm-eval's HFLM and ours over one loaded model (ours patches a copy of the module tree, not the model)."""
    hf = HFLM(pretrained=tiny_model, batch_size=4, device="cpu")
    return hf, PackedLM(pretrained=hf.model, tokenizer=hf.tokenizer, batch_size=4, batch_tokens=1024)


def run(lm, bench, files) -> list[dict]:
    config = build_tasks([bench], files, 1234)[bench.name]
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    tasks = TaskManager(include_defaults=False).load([config])
    out = evaluate(lm=lm, task_dict=tasks, limit=ROWS, log_samples=True, bootstrap_iters=0)
    return sorted(out["samples"][config["task"]], key=lambda s: s["doc_id"])


def case_files(case: str, tmp_path):
    real, fixture = CASES[case]
    if real and (SHARED_DATA / suite("v0", [real])[0].file).is_file():
        bench = suite("v0", [real])[0]
        return bench, fetch_files(parse_locations(str(SHARED_DATA)), [bench.file], tmp_path)
    bench = suite("tiny", [fixture])[0]
    return bench, fetch_files(parse_locations("fixture:gauntlet"), [bench.file], tmp_path)


@pytest.mark.parametrize("case", CASES)
def test_packed_scores_every_request_as_hflm_does(models, case, tmp_path):
    hf, packed = models
    bench, files = case_files(case, tmp_path)
    theirs, ours = run(hf, bench, files), run(packed, bench, files)
    assert [s["arguments"] for s in ours] == [s["arguments"] for s in theirs]
    requests = [args for s in theirs for args in s["arguments"]]
    assert len(requests) >= ROWS
    for context, continuation in requests:  # the token counts score_samples takes from `_encode_pair`
        assert packed._encode_pair(context, continuation) == hf._encode_pair(context, continuation)
    for mine, reference in zip(ours, theirs, strict=True):
        for (ll, greedy), (ll_ref, greedy_ref) in zip(mine["filtered_resps"], reference["filtered_resps"], strict=True):
            assert abs(float(ll) - float(ll_ref)) < TOLERANCE
            assert bool(greedy) == bool(greedy_ref)
    (result, details), (result_ref, details_ref) = score_samples(bench, ours, packed), score_samples(bench, theirs, hf)
    assert [picked(d) for d in details] == [picked(d) for d in details_ref]
    assert [d.get("tokens") for d in details] == [d.get("tokens") for d in details_ref]
    assert result == result_ref


def picked(detail: dict):
    """A row's prediction: the chosen answer (multiple choice, schema), or whether all of it was greedy (LM)."""
    return detail["row"], detail.get("prediction", detail["correct"])


def test_a_shared_context_is_computed_once(models, tmp_path):
    """Multiple choice: the forwards hold fewer tokens than HFLM's inputs (every choice re-reads the context)."""
    hf, packed = models
    bench, files = case_files("multiple_choice_shared_context", tmp_path)
    samples = run(hf, bench, files)
    requests = [(None, *hf._encode_pair(*args)) for s in samples for args in s["arguments"]]
    hflm_tokens = sum(min(len(c) + len(x), hf.max_length + 1) - 1 for _, c, x in requests)
    documents, _ = group(requests, packed.max_length)
    assert len(documents) < len(requests)
    before = dict(packed.stats)
    packed._loglikelihood_tokens(requests, disable_tqdm=True)
    assert packed.stats["requests"] - before["requests"] == len(requests)
    assert packed.stats["tokens"] - before["tokens"] == sum(d.size for d in documents) < hflm_tokens


@pytest.mark.filterwarnings("ignore:.*flex.*:UserWarning")
@pytest.mark.parametrize("attention", ["sdpa", "flex"])
def test_truncation_and_branches_match_hflm(models, attention):
    """Requests longer than max_length, left-truncated as HFLM does (continuations of different lengths see
    different windows), a one-token continuation, duplicates, and documents larger than the row budget;
    through sdpa (CPU's default) and flex (CUDA's default, uncompiled here)."""
    hf, _ = models
    packed = PackedLM(pretrained=hf.model, tokenizer=hf.tokenizer, batch_tokens=1024, attention=attention)
    long = list(range(5, 5 + hf.max_length + 40))
    requests = [
        (None, long, [7, 8, 9]),
        (None, long, [7]),
        (None, long, [7, 8, 9]),
        (None, long[:30], [11, 12]),
        (None, long[:30], [11, 13]),
        (None, long[:30], [400]),
        (None, [3], list(range(20, 20 + hf.max_length))),
    ]
    ours = packed._loglikelihood_tokens(requests, disable_tqdm=True)
    theirs = hf._loglikelihood_tokens(requests, disable_tqdm=True)
    for (ll, greedy), (ll_ref, greedy_ref) in zip(ours, theirs, strict=True):
        assert abs(ll - ll_ref) < TOLERANCE and greedy == greedy_ref


def test_rows_respect_the_token_budget():
    sizes = [700, 30, 300, 2000, 5, 400]
    rows = pack(sizes, 1024)
    assert sorted(i for row in rows for i in row) == list(range(len(sizes)))
    assert all(sum(sizes[i] for i in row) <= 1024 or len(row) == 1 for row in rows)
    assert rows[0] == [3]  # longest first; a document over the budget gets a row of its own


def test_tiny_suite_scores_are_unchanged_with_packed_the_default(tiny_model, tmp_path):
    """run_gauntlet over suite "tiny": hf and packed give identical accuracies and per-row predictions; packed
    is the default of the spec, the CLI and run_gauntlet."""
    assert GauntletSpec().backend == "packed"
    benches = suite("tiny")
    files = fetch_files(parse_locations("fixture:gauntlet"), [b.file for b in benches], tmp_path)
    scores, details = {}, {}
    for backend in ("hf", "packed"):
        out = tmp_path / backend
        out.mkdir()
        spec = GauntletSpec(backend=backend, batch_size=16)
        scores[backend] = run_gauntlet(tiny_model, benches, files, spec, resume_dir=out)
        details[backend] = {b.name: json.loads((out / f"{b.name}.json").read_text())["details"] for b in benches}
    for name, result in scores["hf"]["benchmarks"].items():
        assert scores["packed"]["benchmarks"][name]["accuracy"] == result["accuracy"], name
    assert scores["packed"]["categories"] == scores["hf"]["categories"]
    for name, rows in details["hf"].items():
        assert [picked(d) for d in details["packed"][name]] == [picked(d) for d in rows], name


def test_packed_refuses_what_it_cannot_score(tiny_model, models):
    from transformers import GPT2Config, GPT2LMHeadModel

    hf, _ = models
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(hf.tokenizer)))
    with pytest.raises(LimitError, match="packed scores MPT"):
        PackedLM(pretrained=gpt2, tokenizer=hf.tokenizer)
    with pytest.raises(LimitError, match="'eager' is not one of auto, sdpa, flex"):
        PackedLM(pretrained=tiny_model, attention="eager")
    with pytest.raises(ValidationError, match="backend"):
        GauntletSpec(backend="fast")


def test_hflm_paths_stay_hflms_on_the_same_weights(models):
    """Generation runs on transformers' untouched MPT; the packed attention lives on a copy of the module tree
    that shares every parameter; rolling log-likelihoods (HFLM's windows) are scored packed, as HFLM scores them."""
    from lm_eval.api.instance import Instance

    hf, packed = models
    assert type(packed.model.transformer).__name__ == "MptModel"
    assert type(packed._scorer.transformer).__name__ == "DocumentMptModel"
    assert all(a is b for a, b in zip(packed.model.parameters(), packed._scorer.parameters(), strict=True))
    text = " ".join(f"word{i} and more" for i in range(300))  # longer than max_length: several windows
    request = [Instance("loglikelihood_rolling", doc={}, arguments=(text,), idx=0)]
    ours, theirs = packed.loglikelihood_rolling(request, disable_tqdm=True), hf.loglikelihood_rolling(request, True)
    assert abs(ours[0] - theirs[0]) < TOLERANCE + 1e-6 * abs(theirs[0])  # float32 resolution of a long sum


def test_a_row_that_runs_out_of_memory_is_refused_in_one_line(models, tmp_path, monkeypatch):
    import torch

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 30.00 GiB")

    _, packed = models
    monkeypatch.setattr(packed, "_score", out_of_memory)
    bench, files = case_files("multiple_choice_shared_context", tmp_path)
    with pytest.raises(LimitError, match=r"a packed row of \d+ tokens runs out of memory .* gauntlet.batch_tokens"):
        run(packed, bench, files)
