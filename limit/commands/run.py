"""`limit run STUDY`: the whole study on this machine (local backend)."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from limit.commands.flags import add_max_steps, positive_int
from limit.plan import build_plan
from limit.spec import load_study, resolve_study_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="a study name (see `limit studies`) or a YAML path")
    parser.add_argument("--workdir", help="working root (default ./runs, or LIMIT_WORKDIR)")
    parser.add_argument(
        "--artifacts", help="artifact root: a folder or s3://bucket/prefix (default <workdir>/artifacts)"
    )
    parser.add_argument("--jobs", type=positive_int, help="CPU slots for parallel steps (default: all cores)")
    add_max_steps(parser)
    parser.add_argument("--timings", help="write per-step wall times as JSON to this file")


def main(args: argparse.Namespace) -> int:
    # Flags become the environment that steps (subprocesses) read, exactly as pods get it.
    if args.workdir:
        os.environ["LIMIT_WORKDIR"] = args.workdir
    if args.artifacts:
        os.environ["LIMIT_ARTIFACTS"] = args.artifacts
    workdir = Path(os.environ.get("LIMIT_WORKDIR", "runs"))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")

    from limit.backends.local import collect_report, run_plan
    from limit.store import Store

    study = load_study(args.study)
    plan = build_plan(study, origin=str(resolve_study_path(args.study)), max_steps=args.max_steps)
    store = Store.open(workdir=workdir)
    print(f"study {study.name}: {len(plan.steps)} steps; artifacts in {store.root}")
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
    print(f"MLflow: {os.environ['MLFLOW_TRACKING_URI']} (parent run {outcome.parent_run_id})")
    if not outcome.ok:
        print(f"logs: {outcome.logs}")
        return outcome.exit_code
    folder = collect_report(plan, store)
    if folder is not None:  # a report this execution reused, from the start or after waiting for another
        from limit.steps.report import log_on_parent

        log_on_parent(outcome.parent_run_id, folder, store.manifest(plan.steps["report"].ref)["summary"])
    if folder is not None:
        print((folder / "report.md").read_text())
        print(f"report: {folder / 'report.md'}, {folder / 'report.json'}, {folder / 'report.png'}")
    return 0
