"""Two lm-eval models on the same gauntlet requests: each timed, and how far their answers agree.

Used by `make bench-gauntlet` (packed vs HFLM on CPU) and `limit check-gpu` (the same on a GPU, fp32 and bf16).
"""

from __future__ import annotations

import time
from pathlib import Path

from limit.execution import outputs
from limit.gauntlet.evaluate import run_gauntlet
from limit.spec.study import GauntletSpec


def timed_run(lm, model: str, benches, files, spec: GauntletSpec, details: Path) -> tuple[dict, dict]:
    """run_gauntlet with `lm`, and its per-row details by benchmark (kept through the resume folder).

    The scores also get `loglikelihood_seconds`: the time inside lm.loglikelihood (tokenizing and scoring the
    requests), the part a backend changes; the rest (task building, few-shot prompts, metrics) is shared.
    """
    details.mkdir(parents=True)
    inner, spent = lm.loglikelihood, [0.0]

    def clocked(*args, **kwargs):
        started = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - started

    lm.loglikelihood = clocked
    try:
        scores = run_gauntlet(model, benches, files, spec, lm=lm, resume_dir=details)
    finally:
        del lm.loglikelihood
    scores["loglikelihood_seconds"] = round(spent[0], 3)
    rows = {b: outputs.read(details / f"{b}.json", outputs.Details).details for b in scores["benchmarks"]}
    return scores, {b: [row.model_dump() for row in found] for b, found in rows.items()}


def compare(ours: dict[str, list[dict]], theirs: dict[str, list[dict]]) -> dict:
    """Rows whose prediction (or, language modelling, greedy correctness) differs, and the largest loglik gap."""
    mismatches, gap = {}, 0.0
    for name, reference in theirs.items():
        differ = 0
        for mine, ref in zip(ours[name], reference, strict=True):
            differ += mine.get("prediction", mine["correct"]) != ref.get("prediction", ref["correct"])
            pairs = zip(mine.get("logliks", [mine.get("loglik")]), ref.get("logliks", [ref.get("loglik")]), strict=True)
            gap = max([gap, *(abs(a - b) for a, b in pairs)])
        if differ:
            mismatches[name] = differ
    return {"prediction_mismatches": sum(mismatches.values()), "mismatched": mismatches, "max_loglik_diff": gap}
