"""`limit step KIND --input JSON`: what a pod runs."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from limit.steps import KINDS

    parser.add_argument("kind", help=", ".join(KINDS))
    parser.add_argument("--key", help="the output key the plan computed; the step refuses to run under another")
    parser.add_argument("--input", required=True, help="the step's typed input as JSON")


def main(args: argparse.Namespace) -> int:
    from limit.runner import run_step

    run_step(args.kind, args.input, expected_key=args.key)
    return 0
