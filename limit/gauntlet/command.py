"""`limit gauntlet`: score one model on the Eval Gauntlet, outside any study.

    limit gauntlet --model DIR --data-dir ../shared/gauntlet_data --limit 20 --out scores.json

OUT.json holds, per benchmark, raw accuracy, rescaled score and n; per category its score (null when a
benchmark of it is missing); and the average of the five categories (null unless all are complete).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from limit.errors import LimitError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Model folder or hub id (anything from_pretrained takes).")
    parser.add_argument(
        "--data-dir",
        required=True,
        help="Gauntlet files: a folder, s3://bucket/prefix, fixture:NAME or llm-foundry@<commit>.",
    )
    parser.add_argument("--suite", default="v0", help="Benchmark suite: v0 (the paper's 33) or tiny.")
    parser.add_argument("--tasks", help="Comma-separated subset of the suite's benchmarks.")
    parser.add_argument("--limit", type=int, help="At most this many examples per benchmark.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--backend", choices=("hf", "packed", "vllm"), default="packed")
    parser.add_argument(
        "--batch-tokens", type=int, help="packed: tokens per forward (default: batch size x the model's max length)."
    )
    parser.add_argument("--attention", choices=("auto", "sdpa", "flex"), default="auto", help="packed: attention.")
    parser.add_argument("--seed", type=int, default=1234, help="Few-shot sampling seed (composer's default).")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--workdir", default="runs", help="Cache for downloaded gauntlet files.")
    parser.add_argument("--out", required=True, help="Where to write the scores (JSON).")


def main(args: argparse.Namespace) -> int:
    from limit.gauntlet.benchmarks import CATEGORIES, CATEGORY_TITLES, suite
    from limit.gauntlet.data import fetch_files
    from limit.gauntlet.evaluate import run_gauntlet

    if args.limit is not None and args.limit <= 0:
        raise LimitError("--limit: must be positive")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    benchmarks = suite(args.suite, tasks)
    files = fetch_files(args.data_dir, [b.file for b in benchmarks], Path(args.workdir))
    if not files:
        raise LimitError(f"--data-dir: none of the suite's files found in {args.data_dir}")

    scores = run_gauntlet(
        args.model,
        benchmarks,
        files,
        limit=args.limit,
        batch_size=args.batch_size,
        backend=args.backend,
        batch_tokens=args.batch_tokens,
        attention=args.attention,
        seed=args.seed,
        trust_remote_code=args.trust_remote_code,
    )
    scores["suite"] = args.suite
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(scores, indent=2))

    def fmt(value: float | None) -> str:
        return "incomplete" if value is None else f"{value:+.4f}"

    for category in CATEGORIES:
        print(f"{CATEGORY_TITLES[category]:>10}: {fmt(scores['categories'][category])}")
    print(f"{'Av':>10}: {fmt(scores['average'])}")
    print(f"wrote {out}", file=sys.stderr)
    return 0
