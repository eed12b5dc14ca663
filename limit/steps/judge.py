"""judge step: pairwise comparison of two generate outputs, seed s of A against seed s of B.

Responses are paired by prompt id within a seed (never by instruction text). Each seed is judged with its
own annotator seed, so alpaca-eval's left/right swaps differ between seeds; the openai backend keeps one
cache file per seed under `cache/`, persisted after each seed so a retried step does not pay twice.
Writes `result.json` (see `limit.judge.compare.result`) and `annotations.jsonl` (one row per judged pair).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from limit.errors import LimitError
from limit.io import read_jsonl
from limit.judge.backends import local_judge, openai_judge
from limit.judge.compare import PairedPrompt, judge_seeds, result
from limit.models import model_location
from limit.steps.context import StepContext
from limit.steps.inputs import JudgeInput


def judge(inp: JudgeInput, ctx: StepContext) -> dict:
    a = _responses(ctx.fetch(inp.a) / "responses.jsonl", "a")
    b = _responses(ctx.fetch(inp.b) / "responses.jsonl", "b")
    per_seed = pair_by_prompt(a, b)

    spec = inp.judge
    if spec.backend == "local":
        if inp.judge_model is None:
            raise LimitError("step judge --input: judge_model: backend 'local' needs a judge model")
        backend = local_judge(model_location(inp.judge_model, ctx.workdir), spec.annotator)
    else:
        backend = openai_judge(
            spec.annotator, spec.model, spec.base_url, spec.api_key_env, spec.concurrency, spec.max_retries
        )

    ctx.restore("cache")  # judgments an earlier attempt received
    cache_dir = ctx.out / "cache"
    judgments, annotations, tokens = judge_seeds(
        backend,
        per_seed,
        cache_for=lambda seed: cache_dir / f"seed-{seed}.json",
        after_seed=lambda _: ctx.persist("cache") if cache_dir.exists() else None,
    )
    judge_name = spec.model if spec.backend == "openai" else f"local:{spec.local_model}"
    out = result(judgments, tokens, backend.cost_per_token(), spec.bootstrap, judge_name)
    with open(ctx.out / "annotations.jsonl", "w") as f:
        for row in annotations:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (ctx.out / "result.json").write_text(json.dumps(out, indent=2))

    for seed, counts in out["seeds"].items():
        if counts["win_rate_a"] is not None:
            mlflow.log_metric("win_rate_a_per_seed", counts["win_rate_a"], step=int(seed))
    totals = {k: sum(c[k] for c in out["seeds"].values()) for k in ("wins_a", "wins_b", "ties", "failures")}
    ci = out["ci95"] or [None, None]
    return {
        "win_rate_a": out["win_rate_a"],
        "seed_std": out["seed_std"],
        "ci95_low": ci[0],
        "ci95_high": ci[1],
        "lc_win_rate_a": out["lc_win_rate_a"],
        **totals,
        "judge_tokens": tokens,
        "judge_dollars": out["cost"]["dollars"],
    }


def pair_by_prompt(a: list[dict], b: list[dict]) -> dict[str, list[PairedPrompt]]:
    """Seed s of A with seed s of B, prompt by prompt (A's order); both must cover the same seeds and prompts."""
    b_index = {(str(r["seed"]), str(r["prompt_id"])): r for r in b}
    per_seed: dict[str, list[PairedPrompt]] = {}
    seen = set()
    for row in a:
        key = (str(row["seed"]), str(row["prompt_id"]))
        if key in seen:
            raise LimitError(f"judge: a: seed {key[0]} has prompt_id {key[1]} twice")
        seen.add(key)
        other = b_index.get(key)
        if other is None:
            raise LimitError(f"judge: b: no response for seed {key[0]}, prompt_id {key[1]}")
        if other["instruction"] != row["instruction"]:
            raise LimitError(f"judge: seed {key[0]}, prompt_id {key[1]}: a and b answered different instructions")
        per_seed.setdefault(key[0], []).append(
            PairedPrompt(key[1], (row["instruction"], row["output"], other["output"]))
        )
    if len(seen) != len(b_index):
        extra = sorted(set(b_index) - seen)[0]
        raise LimitError(f"judge: a: no response for seed {extra[0]}, prompt_id {extra[1]}")
    return per_seed


def _responses(path: Path, which: str) -> list[dict]:
    try:
        rows = read_jsonl(path)
    except (OSError, json.JSONDecodeError) as e:
        raise LimitError(f"judge: {which}: {path}: cannot read responses: {e}") from None
    for i, row in enumerate(rows):
        missing = {"prompt_id", "instruction", "output", "seed"} - set(row)
        if missing:
            raise LimitError(f"judge: {which}: {path}: row {i}: missing field {sorted(missing)[0]}")
    return rows
