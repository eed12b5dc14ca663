"""`limit report STUDY [--artifacts ROOT] [--out DIR]`: report.md, report.json and report.png from the outputs
already stored, computing nothing (locally or in S3; the same code as the report step).

Models and pairs whose steps are not complete yet are shown as pending, so a study can be looked at while
it runs. Nothing is logged to MLflow: summary runs belong to a study execution (its report step).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from limit.commands.flags import add_study_and_store
from limit.execution.settings import settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_and_store(parser)
    parser.add_argument("--out", type=Path, help="folder for the files (default <workdir>/<study>/)")


def stored_report(args: argparse.Namespace) -> tuple[str, dict, Path]:
    """(study name, the report's data from stored outputs, the work folder)."""
    from limit.execution.store import Store
    from limit.plan import build_plan
    from limit.report import assemble
    from limit.spec.study import load_study, resolve_study_path

    workdir = Path(args.workdir) if args.workdir else settings().workdir
    plan = build_plan(load_study(args.study), origin=str(resolve_study_path(args.study)))
    inp = plan.steps["report"].input
    store = Store.open(root=args.artifacts, workdir=workdir)
    made_by = store.manifest(plan.steps["report"].ref) or {}  # the execution whose report step ran last
    data = assemble(
        inp.study,
        inp.models,
        inp.pairs,
        store,
        calibration=inp.calibration,
        seed=inp.bootstrap_seed,
        parent_run_id=made_by.get("parent_run"),
        partial=True,
    )
    return inp.study, data, workdir


def pending(data: dict) -> list[str]:
    return [m["name"] for m in data["models"] if m["status"] == "pending"] + [
        f"{p['a']} vs {p['b']} ({p['prompts']})" for p in data["pairs"] if p["status"] == "pending"
    ]


def main(args: argparse.Namespace) -> int:
    from limit.errors import LimitError
    from limit.execution.io import check_output
    from limit.report import FILES, write

    if args.out:
        check_output(args.out, "--out", folder=True)
    study, data, workdir = stored_report(args)
    waiting = pending(data)
    if len(waiting) == len(data["models"]) + len(data["pairs"]):  # a mistyped --workdir or --artifacts
        where = args.artifacts or os.environ.get("LIMIT_ARTIFACTS") or workdir / "artifacts"
        raise LimitError(f"study {study}: none of its steps is complete in {where}: check --workdir and --artifacts")
    out = args.out or workdir / study
    write(data, out)
    if waiting:
        print(f"not complete yet (shown as pending): {', '.join(waiting)}")
    print(f"report: {', '.join(str(out / name) for name in FILES)}")
    print_mlflow_links(study)
    return 0


def print_mlflow_links(study: str) -> None:
    """The study's current summary runs side by side, when the MLflow store has them."""
    from limit.execution import tracking

    compare = tracking.compare_link(study)
    if compare:
        print(f"the paper's table in MLflow (the current summary run of each model): {compare}")
