"""`limit judge-pair --a A --b B --out OUT`: judge two models' responses against each other, outside a study.

A and B are either generate's `responses.jsonl` (every seed; paired by seed and prompt id) or JSON lists of
{instruction, output} (paired by position, judged as one seed, `--seed`). The judge is configured as a
study's `judge:` (same defaults, same backends). OUT holds what a judge step's result.json holds, the totals
and one annotation per pair; each seed's alpaca-eval cache sits beside it, so a rerun asks nothing again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from limit.commands.flags import seed_int
from limit.errors import LimitError
from limit.execution import logs

if TYPE_CHECKING:
    from limit.execution.outputs import Response

# flag: JudgeSpec field. Flags left unset take the spec's defaults, which are declared only there.
SPEC_FLAGS = {
    "backend": "backend",
    "annotator": "annotator",
    "model": "model",
    "base_url": "base_url",
    "api_key_env": "api_key_env",
    "concurrency": "concurrency",
    "max_retries": "max_retries",
    "retry_wait": "retry_wait",
    "bootstrap": "bootstrap",
    "max_failure_rate": "max_failure_rate",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--a", type=Path, required=True, help="Model A: responses.jsonl or [{instruction, output}]")
    parser.add_argument("--b", type=Path, required=True, help="Model B, in the same form as A.")
    parser.add_argument("--out", type=Path, required=True, help="Where to write the result JSON.")
    parser.add_argument(
        "--seed", type=seed_int, default=1, help="For JSON lists: the annotator seed (left/right swaps)."
    )
    parser.add_argument("--backend", choices=("openai", "local"))
    parser.add_argument("--annotator", help="alpaca-eval annotator config (default: the study default).")
    parser.add_argument("--model", help="Judge model name at the endpoint.")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint (default: OpenAI's).")
    parser.add_argument("--api-key-env", help="Environment variable with the API key.")
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--max-retries", type=int, help="Retries of failed requests or answers.")
    parser.add_argument("--retry-wait", type=float, help="Seconds before the first retry (doubling).")
    parser.add_argument("--local-model", help="For --backend local: a model folder or hub id.")
    parser.add_argument("--cache", type=Path, help="Folder for the alpaca-eval caches (default: beside --out).")
    parser.add_argument("--bootstrap", type=int, help="Bootstrap resamples for the 95%% CI.")
    parser.add_argument(
        "--max-failure-rate", type=float, help="Largest share of failed judgments that still writes OUT (0.02)."
    )


def main(args: argparse.Namespace) -> int:
    from limit.execution.io import check_output, write_json
    from limit.judge.backends import make_judge
    from limit.judge.compare import judge_responses, pair_by_prompt, seed_totals
    from limit.models.base import check_location

    spec = judge_spec(args)
    check_output(args.out, "--out")
    if args.cache:
        check_output(args.cache, "--cache", folder=True)
    if args.local_model:
        check_location(args.local_model, "--local-model")
    a, b = read_side(args.a, "--a", args.seed), read_side(args.b, "--b", args.seed)
    if args.b.suffix != ".jsonl" and len(a) != len(b):
        raise LimitError(f"--b: {args.b}: {len(b)} responses, but --a has {len(a)} (they are paired by position)")
    per_seed = pair_by_prompt(a, b, names=(f"--a: {args.a}", f"--b: {args.b}"))
    cache = args.cache or args.out.parent
    log = args.out.with_suffix(".log")
    with logs.to_file(log):  # alpaca-eval's own logging (an ERROR per unparseable judgment) goes beside OUT
        progress = logs.Progress("seeds judged", len(per_seed))
        out, annotations = judge_responses(
            make_judge(spec, args.local_model),
            spec,
            per_seed,
            cache_for=lambda seed: cache / f"{args.out.stem}.cache-seed-{seed}.json",
            after_seed=lambda seed: progress.advance(f"seed {seed}"),
        )
    report = {**seed_totals(out), "n": sum(c["n"] for c in out["seeds"].values()), **out, "annotations": annotations}
    write_json(args.out, report)
    print_leaderboard(out, model_name(a, args.a), model_name(b, args.b))
    print(f"wrote {args.out} (judge library log: {log})")
    return 0


def judge_spec(args: argparse.Namespace):
    from pydantic import ValidationError

    from limit.spec.study import JudgeSpec

    given = {field: getattr(args, flag) for flag, field in SPEC_FLAGS.items() if getattr(args, flag) is not None}
    if args.local_model:
        given["local_model"] = args.local_model
    try:
        return JudgeSpec(**given)
    except ValidationError as e:
        error = e.errors()[0]
        raise LimitError(f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}") from None


def read_side(path: Path, flag: str, seed: int) -> list[Response]:
    """Responses from a responses.jsonl or a JSON list of {instruction, output} (item i: prompt i)."""
    from limit.execution.outputs import Response
    from limit.judge.compare import read_responses

    if path.suffix == ".jsonl":
        return read_responses(path, flag)
    try:
        items = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LimitError(f"{flag}: {path}: cannot read: {e}") from None
    if not isinstance(items, list):
        raise LimitError(f"{flag}: {path}: expected a JSON list of {{instruction, output}} or a responses.jsonl")
    for i, item in enumerate(items):
        for field in ("instruction", "output"):
            if not isinstance(item, dict) or not isinstance(item.get(field), str):
                raise LimitError(f"{flag}: {path}: item {i}: field '{field}' missing or not a string")
    return [
        Response(prompt_id=str(i), instruction=x["instruction"], output=x["output"], seed=seed)
        for i, x in enumerate(items)
    ]


def model_name(rows: list[Response], path: Path) -> str:
    """The name generate gave the model, else the file it was read from."""
    return next((row.model for row in rows if row.model), str(path))


def print_leaderboard(out: dict, a: str, b: str) -> None:
    """An alpaca_eval-style leaderboard of the two models (B's rate is A's complement, ties excluded)."""
    from limit.judge.compare import seed_totals
    from limit.judge.winrate import percent

    totals = seed_totals(out)
    lengths = out.get("lengths") or {}
    rate, ci, lc = out["win_rate_a"], out["ci95"] or [None, None], out["lc_win_rate_a"]
    rows = [
        (
            a,
            percent(rate),
            f"{percent(ci[0])}-{percent(ci[1])}",
            percent(lc),
            totals["wins_a"],
            totals["wins_b"],
            lengths.get("a"),
        ),
        (
            b,
            percent(_complement(rate)),
            f"{percent(_complement(ci[1]))}-{percent(_complement(ci[0]))}",
            percent(_complement(lc)),
            totals["wins_b"],
            totals["wins_a"],
            lengths.get("b"),
        ),
    ]
    width = max(len(row[0]) for row in rows)
    print(f"{'model':<{width}}  win_rate  95% CI       lc_win_rate  n_wins  n_losses  avg_length")
    for name, win, interval, lcr, wins, losses, length in rows:
        mean = f"{length['mean']:.0f}" if length else "n/a"
        print(f"{name:<{width}}  {win:>8}  {interval:<11}  {lcr:>11}  {wins:>6}  {losses:>8}  {mean:>10}")
    print(f"ties {totals['ties']}, failures {totals['failures']} (excluded); {len(out['seeds'])} seed(s)")


def _complement(rate: float | None) -> float | None:
    return None if rate is None else 1 - rate
