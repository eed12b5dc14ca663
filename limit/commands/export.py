"""`limit export STUDY --csv FILE`: the one-row-per-model table (what each model's MLflow summary run holds:
gauntlet average, categories and benchmarks at the chosen epoch, chosen epoch, training tokens, win rates
with their 95% bounds), then one row per replicate group (means, `.std` beside each, each seed's epoch), from
stored outputs, computing nothing. Values are as report.md prints them: win rates (and their bounds and
differences) in %, to one decimal; gauntlet scores to three decimals."""

from __future__ import annotations

import argparse
from pathlib import Path

from limit.commands.flags import add_study_and_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_and_store(parser)
    parser.add_argument("--csv", type=Path, required=True, help="where to write the table")


def main(args: argparse.Namespace) -> int:
    from limit.commands.report import pending, stored_report
    from limit.execution.io import check_output
    from limit.report.table import replicate_rows, summary_rows, write_csv

    check_output(args.csv, "--csv")
    _, data, _ = stored_report(args)
    models, groups = summary_rows(data), replicate_rows(data)
    write_csv(models + groups, args.csv)
    waiting = pending(data)
    note = f"; not complete yet: {', '.join(waiting)}" if waiting else ""
    replicated = f", {len(groups)} replicate groups" if groups else ""
    print(f"wrote {args.csv}: {len(models)} models{replicated} (win rates in %){note}")
    return 0
