"""`gauntlet.backend: packed` on the RoPE families against lm-eval's own HFLM, through lm-eval's evaluator: on
the tiny Llama and the tiny Qwen2 (grouped-query attention), the same per-request log-likelihoods (1e-4),
greedy flags and predictions on a few rows of each case of test_gauntlet_packed (the v0 files where ../shared
holds them), and HFLM's left truncation with branches of one context."""

from __future__ import annotations

import pytest
import test_gauntlet_packed
from lm_eval.models.huggingface import HFLM
from test_gauntlet_packed import CASES, TOLERANCE, case_files, picked, run

from limit.errors import LimitError
from limit.gauntlet.evaluate import score_samples
from limit.gauntlet.packed import PackedLM
from limit.models.base import materialize_tiny
from limit.spec.study import TinyModel

ROWS = 3
FAMILIES = {"llama": TinyModel(arch="llama", n_kv_heads=2), "qwen2": TinyModel(arch="qwen2", n_kv_heads=2)}


@pytest.fixture(scope="module", params=FAMILIES)
def models(request, tmp_path_factory) -> tuple[HFLM, PackedLM]:
    location = str(materialize_tiny(FAMILIES[request.param], tmp_path_factory.mktemp("work")))
    hf = HFLM(pretrained=location, batch_size=4, device="cpu")
    return hf, PackedLM(pretrained=hf.model, tokenizer=hf.tokenizer, batch_size=4, batch_tokens=1024)


@pytest.mark.parametrize("case", CASES)
def test_packed_scores_every_request_as_hflm_does(models, case, tmp_path, monkeypatch):
    monkeypatch.setattr(test_gauntlet_packed, "ROWS", ROWS)
    hf, packed = models
    bench, files = case_files(case, tmp_path)
    theirs, ours = run(hf, bench, files), run(packed, bench, files)
    assert [s["arguments"] for s in ours] == [s["arguments"] for s in theirs] and theirs
    for mine, reference in zip(ours, theirs, strict=True):
        for (ll, greedy), (ll_ref, greedy_ref) in zip(mine["filtered_resps"], reference["filtered_resps"], strict=True):
            assert abs(float(ll) - float(ll_ref)) < TOLERANCE
            assert bool(greedy) == bool(greedy_ref)
    (_, details), (_, details_ref) = score_samples(bench, ours, packed), score_samples(bench, theirs, hf)
    assert [picked(d) for d in details] == [picked(d) for d in details_ref]


def test_truncation_and_branches_match_hflm(models):
    """Left-truncated requests (continuations of different lengths see different windows), branches of one
    context at the positions they would have directly after it, duplicates, a document over the row budget."""
    hf, packed = models
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
    assert all(a is b for a, b in zip(packed.model.parameters(), packed._scorer.parameters(), strict=True))
    assert packed.model.config._attn_implementation == "sdpa"  # HFLM's own paths keep transformers' attention


def test_flex_is_refused_for_rope(models):
    hf, _ = models
    with pytest.raises(LimitError, match="flex is MPT's"):
        PackedLM(pretrained=hf.model, tokenizer=hf.tokenizer, attention="flex")
