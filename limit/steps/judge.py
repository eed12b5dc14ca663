"""judge step: pairwise comparison of two generate outputs, seed s of A against seed s of B.

Responses are paired by prompt id within a seed (never by instruction text). Each seed is judged with its
own annotator seed, so alpaca-eval's left/right swaps differ between seeds; the openai backend keeps one
cache file per seed under `cache/`, persisted after each seed so a retried step does not pay twice.
Writes `result.json` (see `limit.judge.compare.result`) and `annotations.jsonl` (one row per judged pair).
More failed judgments than `judge.max_failure_rate` allows end the step retryable (exit 75) before either is
written: the caches keep what succeeded, so the next attempt asks only for the failures.
"""

from __future__ import annotations

import json

import mlflow

from limit.execution.context import StepContext
from limit.execution.io import write_jsonl
from limit.judge.backends import make_judge
from limit.judge.compare import check_complete, judge_responses, pair_by_prompt, read_responses, seed_totals
from limit.models.base import model_location
from limit.steps.inputs import JudgeInput


def judge(inp: JudgeInput, ctx: StepContext) -> dict:
    a = read_responses(ctx.fetch(inp.a) / "responses.jsonl", "judge: a")
    b = read_responses(ctx.fetch(inp.b) / "responses.jsonl", "judge: b")
    for rows, ref, which in ((a, inp.a, "judge: a"), (b, inp.b, "judge: b")):
        check_complete(rows, (ctx.store.manifest(ref) or {}).get("summary") or {}, f"{which} ({ref})")
    per_seed = pair_by_prompt(a, b)
    local_model = model_location(inp.judge_model, ctx.workdir) if inp.judge_model else None

    ctx.restore("cache")  # judgments an earlier attempt received
    cache_dir = ctx.out / "cache"
    out, annotations = judge_responses(
        make_judge(inp.judge, local_model),
        inp.judge,
        per_seed,
        cache_for=lambda seed: cache_dir / f"seed-{seed}.json",
        after_seed=lambda _: ctx.persist("cache") if cache_dir.exists() else None,
    )
    write_jsonl(annotations, ctx.out / "annotations.jsonl")
    (ctx.out / "result.json").write_text(json.dumps(out, indent=2))

    for seed, counts in out["seeds"].items():
        if counts["win_rate_a"] is not None:
            mlflow.log_metric("win_rate_a_per_seed", counts["win_rate_a"], step=int(seed))
        mlflow.log_metric("failures_per_seed", counts["failures"], step=int(seed))
    ci = out["ci95"] or [None, None]
    return {
        "win_rate_a": out["win_rate_a"],
        "seed_std": out["seed_std"],
        "ci95_low": ci[0],
        "ci95_high": ci[1],
        "lc_win_rate_a": out["lc_win_rate_a"],
        **seed_totals(out),
        "failed_generations": out["failed_generations"],
        "judge_tokens": out["cost"]["tokens"],
        "judge_dollars": out["cost"]["dollars"],
        "first_shown_share": out["positions"]["first_shown_share"],
        "unparsed_share": out["positions"]["unparsed_share"],
        **({"judge_warning": out["positions"]["warning"][:240]} if out["positions"]["warning"] else {}),
    }
