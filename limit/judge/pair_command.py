"""`limit judge-pair`: judge two lists of responses against each other, outside any study.

A.json and B.json are lists of {instruction, output}, paired by position (item i of A against item i of B).
OUT.json holds wins_a, wins_b, ties, failures, win_rate_a (a fraction), plus the 95% CI, lengths, the
length-controlled win rate, the judge's cost and one annotation per pair. The alpaca-eval cache for this
seed sits beside OUT.json (`--cache` to move it), so running the command again makes no new requests.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from limit.errors import LimitError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--a", type=Path, required=True, help="Responses of model A: [{instruction, output}, ...]")
    parser.add_argument("--b", type=Path, required=True, help="Responses of model B, in the same order as A.")
    parser.add_argument("--out", type=Path, required=True, help="Where to write the result JSON.")
    parser.add_argument("--seed", type=int, default=1, help="Annotator seed: decides the left/right swaps.")
    parser.add_argument("--backend", choices=("openai", "local"), default="openai")
    parser.add_argument("--annotator", default="alpaca_eval_gpt4_0613", help="alpaca-eval annotator config.")
    parser.add_argument("--model", default="gpt-4-0613", help="Judge model name at the endpoint.")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (default: OpenAI's).")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="Environment variable with the API key.")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-retries", type=int, default=5, help="Retries of failed requests or answers.")
    parser.add_argument("--retry-wait", type=float, default=2.0, help="Seconds before the first retry (doubling).")
    parser.add_argument("--local-model", default=None, help="For --backend local: a model folder or hub id.")
    parser.add_argument("--cache", type=Path, default=None, help="alpaca-eval cache file (default: beside --out).")
    parser.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples for the 95%% CI.")


def main(args: argparse.Namespace) -> int:
    from limit.judge.backends import local_judge, openai_judge
    from limit.judge.compare import PairedPrompt, judge_seeds, result

    a, b = _read(args.a, "--a"), _read(args.b, "--b")
    if len(a) != len(b):
        raise LimitError(f"--b: {args.b}: {len(b)} responses, but --a has {len(a)} (they are paired by position)")
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x["instruction"] != y["instruction"]:
            raise LimitError(f"--b: {args.b}: item {i}: instruction differs from --a's item {i}")
    if args.backend == "local":
        if not args.local_model:
            raise LimitError("--local-model: required with --backend local")
        judge = local_judge(args.local_model, args.annotator)
    else:
        judge = openai_judge(
            args.annotator,
            args.model,
            args.base_url,
            args.api_key_env,
            args.concurrency,
            args.max_retries,
            args.retry_wait,
        )

    paired = [
        PairedPrompt(str(i), (x["instruction"], x["output"], y["output"]))
        for i, (x, y) in enumerate(zip(a, b, strict=True))
    ]
    cache = args.cache or args.out.with_name(f"{args.out.stem}.cache-seed-{args.seed}.json")
    judgments, annotations, tokens = judge_seeds(judge, {str(args.seed): paired}, cache_for=lambda _: cache)

    out = result(
        judgments,
        tokens,
        judge.cost_per_token(),
        args.bootstrap,
        args.model if args.backend == "openai" else args.local_model,
    )
    seed = out["seeds"][str(args.seed)]
    report = {**{k: seed[k] for k in ("wins_a", "wins_b", "ties", "failures", "n", "win_rate_a")}, "seed": args.seed}
    report.update({k: out[k] for k in ("ci95", "lc_win_rate_a", "lc_reason", "lengths", "cost")})
    report["annotations"] = annotations
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    rate = "n/a" if seed["win_rate_a"] is None else f"{100 * seed['win_rate_a']:.1f}%"
    print(
        f"win rate of A: {rate} (wins {seed['wins_a']}, losses {seed['wins_b']}, ties {seed['ties']}, "
        f"failures {seed['failures']}) -> {args.out}"
    )
    return 0


def _read(path: Path, flag: str) -> list[dict]:
    try:
        items = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LimitError(f"{flag}: {path}: cannot read: {e}") from None
    if not isinstance(items, list):
        raise LimitError(f"{flag}: {path}: expected a JSON list of {{instruction, output}}")
    for i, item in enumerate(items):
        for field in ("instruction", "output"):
            if not isinstance(item, dict) or not isinstance(item.get(field), str):
                raise LimitError(f"{flag}: {path}: item {i}: field '{field}' missing or not a string")
    return items
