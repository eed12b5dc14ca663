"""`limit parent-run start|end`: the MLflow parent run of one study execution on Argo.

The workflow's first task starts it and publishes its id as an output parameter (every step gets it as
LIMIT_PARENT_RUN_ID); the exit handler ends it with the workflow's status.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ARGO_TO_MLFLOW = {"Succeeded": "FINISHED", "Failed": "FAILED", "Error": "FAILED"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    start = sub.add_parser("start", help="create the parent run; write its id to $LIMIT_OUTPUTS_DIR/parent_run_id")
    start.add_argument("--study", required=True)
    start.add_argument("--workflow", help="the Argo workflow's name (a tag on the run)")
    end = sub.add_parser("end", help="end the parent run with the workflow's status")
    end.add_argument("--run-id", required=True)
    end.add_argument("--status", required=True, help="Argo's workflow status: Succeeded, Failed or Error")


def main(args: argparse.Namespace) -> int:
    from limit.execution import tracking

    if args.action == "start":
        tags = {"limit.backend": "argo", **({"limit.workflow": args.workflow} if args.workflow else {})}
        run_id = tracking.start_parent(args.study, tags)
        out = Path(os.environ.get("LIMIT_OUTPUTS_DIR", ".")) / "parent_run_id"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(run_id)
        print(f"MLflow parent run {run_id} for study {args.study}")
    else:
        tracking.end_parent(args.run_id, ARGO_TO_MLFLOW.get(args.status, "KILLED"))
        print(f"MLflow parent run {args.run_id} ended: {args.status}")
    return 0
