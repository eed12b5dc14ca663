"""`limit step KIND --input JSON`: what a pod runs."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from limit.steps import KINDS

    parser.add_argument("kind", help=", ".join(KINDS))
    parser.add_argument("--key", help="the output key the plan computed; the step refuses to run under another")
    parser.add_argument("--input", required=True, help="the step's typed input as JSON")
    parser.add_argument("--input-base", help="input fields shared with other steps (merged under --input)")


def main(args: argparse.Namespace) -> int:
    from limit.errors import LimitError
    from limit.runner import run_step
    from limit.steps import merged_input

    try:
        raw = merged_input(args.input, args.input_base)
    except (ValueError, TypeError) as e:
        raise LimitError(f"step {args.kind} --input/--input-base: not a JSON object: {e}") from None
    run_step(args.kind, raw, expected_key=args.key)
    return 0
