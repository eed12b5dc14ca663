"""`limit gauntlet --model X`: score one model on the Eval Gauntlet, outside any study.

    limit gauntlet --model DIR [--data-dir ../shared/gauntlet_data] [--limit 20] [--out scores.json]

The gauntlet is configured as a study's `gauntlet:` (same defaults: suite v0, the shared data beside the
checkout plus `runs/gauntlet-converted` when it exists) and scored by the same function as the gauntlet step.
Prints an lm-eval-style table; `--out` writes scores.json (per benchmark: accuracy, rescaled score, n and their
standard errors; per category its score and standard error, null when one of its benchmarks is missing; the
average, null unless all are complete).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from limit.errors import LimitError
from limit.execution import logs

CONVERTED = Path("runs/gauntlet-converted")  # where `limit gauntlet-convert`'s README command writes
# flag: GauntletSpec field; flags left unset take the spec's defaults, declared only there.
SPEC_FLAGS = {
    "suite": "suite",
    "limit": "limit",
    "batch_size": "batch_size",
    "batch_tokens": "batch_tokens",
    "backend": "backend",
    "attention": "attention",
    "seed": "seed",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Model folder or hub id (anything from_pretrained takes).")
    parser.add_argument(
        "--data-dir", help="Gauntlet files: folders, s3://bucket/prefix, fixture:NAME or llm-foundry@<commit>."
    )
    parser.add_argument("--suite", help="Benchmark suite: v0 (the paper's 33, default) or tiny.")
    parser.add_argument("--tasks", help="Comma-separated subset of the suite's benchmarks.")
    parser.add_argument("--limit", type=int, help="At most this many examples per benchmark.")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--backend", help="Scoring backend: packed (default), hf (lm-eval's HFLM), vllm.")
    parser.add_argument("--batch-tokens", type=int, help="packed: tokens per forward.")
    parser.add_argument("--attention", help="packed: auto (default), sdpa or flex.")
    parser.add_argument("--seed", type=int, help="Few-shot sampling seed (composer's default).")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--workdir", default="runs", help="Cache for downloaded gauntlet files.")
    parser.add_argument("--out", help="Also write the scores here (JSON).")


def main(args: argparse.Namespace) -> int:
    from limit.execution.io import check_output, write_json
    from limit.gauntlet.evaluate import score_model
    from limit.models.base import Pretrained, check_location

    spec = gauntlet_spec(args)
    check_location(args.model, "--model")
    check_output(Path(args.workdir), "--workdir", folder=True)
    if args.out:
        check_output(Path(args.out), "--out")
    log = Path(args.out).with_suffix(".log") if args.out else Path(args.workdir) / "logs" / "gauntlet.log"
    with logs.to_file(log):  # lm-eval's and transformers' logging go to the log, not the console
        model = Pretrained(args.model, trust_remote_code=args.trust_remote_code)
        progress = logs.Progress("benchmarks")
        scores = score_model(
            model, spec, Path(args.workdir), on_benchmark=lambda name, _, total: progress.advance(name, total=total)
        )
    if args.out:
        write_json(Path(args.out), scores)
        print(f"wrote {args.out}", file=sys.stderr)
    print(f"library log: {log}", file=sys.stderr)
    print_table(scores)
    return 0


def gauntlet_spec(args: argparse.Namespace):
    from pydantic import ValidationError

    from limit.spec.study import GauntletSpec

    given = {field: getattr(args, flag) for flag, field in SPEC_FLAGS.items() if getattr(args, flag) is not None}
    if args.tasks:
        given["tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
    default_data = GauntletSpec.model_fields["data"].default + (f",{CONVERTED}" if CONVERTED.is_dir() else "")
    given["data"] = args.data_dir or default_data
    try:
        return GauntletSpec(**given)
    except ValidationError as e:
        error = e.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "data"
        flag = {"data": "data-dir"}.get(field, field.replace("_", "-"))
        raise LimitError(f"--{flag}: {error['msg']}") from None


def print_table(scores: dict) -> None:
    """One row per benchmark, then the categories and the average, as lm-eval prints its results."""
    from limit.gauntlet.benchmarks import CATEGORIES, CATEGORY_TITLES

    def fmt(value: float | None, stderr: float | None = None) -> str:
        spread = "" if stderr is None else f" ± {stderr:.4f}"
        return "incomplete" if value is None else f"{value:+.4f}{spread}"

    def se(value: float | None) -> str:
        return "   n/a" if value is None else f"{value:.4f}"

    print("|Benchmark                          |Category  |     n|Accuracy| |Stderr|  Score|")
    print("|-----------------------------------|----------|-----:|-------:|-|-----:|------:|")
    for name, result in sorted(scores["benchmarks"].items(), key=lambda kv: (kv[1]["category"], kv[0])):
        title, error = CATEGORY_TITLES[result["category"]], se(result.get("stderr"))
        print(
            f"|{name:<35}|{title:<10}|{result['n']:>6}|{result['accuracy']:>8.4f}|±|{error}|{result['score']:>+7.3f}|"
        )
    errors = scores.get("categories_stderr") or {}
    for category in CATEGORIES:
        print(f"{CATEGORY_TITLES[category]:>10}: {fmt(scores['categories'][category], errors.get(category))}")
    print(f"{'Av':>10}: {fmt(scores['average'], scores.get('average_stderr'))}")
    if scores["missing"]:
        print(f"missing: {', '.join(scores['missing'])}")
