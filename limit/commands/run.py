"""`limit run STUDY`: the whole study on this machine (local backend).

Before any step runs: the plan's totals (as `limit plan --summary`), then the pre-flight (limit/plan/preflight.py):
a missing judge key, gauntlet file or GPU is one line each and exit 2, with nothing started.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from limit.commands.flags import add_max_steps, add_study_and_store, positive_int
from limit.errors import LimitError
from limit.execution.settings import settings
from limit.plan import build_plan
from limit.spec.study import load_study, resolve_study_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_and_store(parser)
    parser.add_argument("--jobs", type=positive_int, help="CPU slots for parallel steps (default: all cores)")
    add_max_steps(parser)
    parser.add_argument("--timings", help="write per-step wall times as JSON to this file")


def main(args: argparse.Namespace) -> int:
    from limit.execution.io import check_output

    if args.timings:
        check_output(Path(args.timings), "--timings")
    # Flags become the environment that steps (subprocesses) read, exactly as pods get it.
    if args.workdir:
        os.environ["LIMIT_WORKDIR"] = args.workdir
    if args.artifacts:
        os.environ["LIMIT_ARTIFACTS"] = args.artifacts
    workdir = settings().workdir
    if "MLFLOW_TRACKING_URI" not in os.environ and set("?%#") & set(str(workdir.resolve())):
        raise LimitError(f"--workdir: {workdir}: '?', '%' and '#' would break MLflow's sqlite URI there")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")

    from limit.backends.local import collect_report, run_plan
    from limit.commands.plan import print_summary
    from limit.execution import tracking
    from limit.execution.store import Store
    from limit.plan.preflight import preflight

    origin = str(resolve_study_path(args.study))
    study = load_study(args.study)
    plan = build_plan(study, origin=origin, max_steps=args.max_steps)
    store = Store.open(workdir=workdir)
    print_summary(plan, None)
    problems = preflight(plan, store, origin)
    for problem in problems:
        print(f"limit: pre-flight: {problem}", file=sys.stderr)
    if problems:
        raise LimitError(f"pre-flight: {len(problems)} problem(s) above; no step was started")
    where = "".join(
        f" --{flag} {value}" for flag, value in (("workdir", args.workdir), ("artifacts", args.artifacts)) if value
    )
    print(f"artifacts in {store.root}; where it stands: limit status {args.study}{where}")
    started = time.time()
    outcome = run_plan(plan, store, jobs=args.jobs)
    wall = time.time() - started
    if args.timings:
        Path(args.timings).parent.mkdir(parents=True, exist_ok=True)
        Path(args.timings).write_text(json.dumps({"study": study.name, "wall_seconds": wall, **vars(outcome)}))
    print(
        f"\n{len(outcome.ran)} steps ran, {len(outcome.reused)} reused, "
        f"{len(outcome.failed)} failed, {len(outcome.skipped)} skipped in {wall:.1f}s"
    )
    print(f"MLflow parent run {outcome.parent_run_id}: {tracking.ui_link(study.name)}")
    if not outcome.ok:
        print(f"logs: {outcome.logs}")
        return outcome.exit_code
    print_report(collect_report(plan, store), study.name)
    return 0


def print_report(folder: Path | None, study: str) -> None:
    """The report's tables on the console, where its files are, and the MLflow view of the same table."""
    from limit.commands.report import print_mlflow_links

    if folder is not None:
        from limit.execution import outputs
        from limit.report import FILES
        from limit.report.markdown import gauntlet_section, judge_section

        data = outputs.read(folder / "report.json", outputs.ReportData).model_dump()
        print("\n".join(["", *gauntlet_section(data), "", *judge_section(data), ""]))
        print(f"report: {', '.join(str(folder / name) for name in FILES)}")
    print_mlflow_links(study)
