"""`limit verify STUDY [--artifacts ROOT]`: read every completed step's files and compare each one's size and
sha256 with its manifest. A step whose file does not match is marked not done (one line naming the file), so
the next `limit run` redoes it; exit 1 when any did not match.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from limit.commands.flags import add_study_and_store
from limit.errors import LimitError
from limit.execution.settings import settings
from limit.execution.store import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_study_and_store(parser)


def main(args: argparse.Namespace) -> int:
    from limit.plan import build_plan
    from limit.spec.study import load_study, resolve_study_path

    workdir = Path(args.workdir) if args.workdir else settings().workdir
    plan = build_plan(load_study(args.study), origin=str(resolve_study_path(args.study)))
    store = Store.open(root=args.artifacts, workdir=workdir)
    checked, bad = 0, 0
    for step in plan.order():
        if store.manifest(step.ref) is None:
            continue
        checked += 1
        try:
            store.check(step.ref)
        except LimitError as e:
            bad += 1
            print(e, file=sys.stderr)
    print(f"study {plan.study.name} ({store.root}): {checked} completed steps read, {bad} did not match")
    return 1 if bad else 0
