"""`limit plan STUDY`: the steps, their dependencies and each step's argv."""

from __future__ import annotations

import argparse
import json
import shlex

from limit.plan import build_plan
from limit.spec import load_study, resolve_study_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="a study name (see `limit studies`) or a YAML path")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def main(args: argparse.Namespace) -> int:
    plan = build_plan(load_study(args.study), origin=str(resolve_study_path(args.study)))
    if args.json:
        print(json.dumps(plan.to_json(), indent=2))
        return 0
    print(f"study {plan.study.name}: {len(plan.steps)} steps")
    for step in plan.order():
        after = f"  after: {', '.join(step.deps)}" if step.deps else ""
        print(f"\n{step.id}  [{step.ref}]{after}")
        print(f"  {shlex.join(step.argv)}")
    return 0
