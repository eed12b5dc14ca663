"""`limit studies`: the studies shipped in workflows/studies/."""

from __future__ import annotations

import argparse

from limit.spec.study import list_studies, load_study


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    for name in list_studies():
        study = load_study(name)
        print(f"{name:12} {len(study.runs):3} runs  {study.description}")
    return 0
