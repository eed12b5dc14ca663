"""`limit gauntlet-convert --out DIR [NAME ...]`: gauntlet files for the four v0 benchmarks missing from
../shared/gauntlet_data, made from their public datasets (see limit/gauntlet/convert.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from limit.errors import LimitError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from limit.gauntlet.convert import CONVERTERS

    parser.add_argument("names", nargs="*", default=list(CONVERTERS), help="Benchmarks (default: all four).")
    parser.add_argument("--out", required=True, help="Folder to write <category>/<name>.jsonl into.")
    parser.add_argument("--source", help="A local file in the hub dataset's schema (one benchmark only).")


def main(args: argparse.Namespace) -> int:
    from limit.execution.io import check_output
    from limit.gauntlet.convert import CONVERTERS, convert

    if args.source and len(args.names) != 1:
        raise LimitError("--source: name exactly one benchmark")
    unknown = [name for name in args.names if name not in CONVERTERS]
    if unknown:
        raise LimitError(f"no converter for '{unknown[0]}' (have: {', '.join(CONVERTERS)})")
    check_output(Path(args.out), "--out", folder=True)
    for name in args.names:
        print(f"wrote {convert(name, Path(args.out), args.source)}")
    return 0
