"""Flags several commands share, and the argparse types that refuse a bad number in one line."""

from __future__ import annotations

import argparse

from limit.plan import MAX_STEPS
from limit.spec.study import MAX_SEED


def bounded_int(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is not in [{low}, {high if high is not None else 'inf'}]")
        return value

    return parse


positive_int = bounded_int(1)
seed_int = bounded_int(0, MAX_SEED)


def add_max_steps(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        default=MAX_STEPS,
        help="refuse a plan of more steps than this (default %(default)s)",
    )


def add_study_and_store(parser: argparse.ArgumentParser) -> None:
    """The study, and where its work folder and artifacts are (as `limit run` was given them)."""
    parser.add_argument("study", help="a study name (see `limit studies`) or a YAML path")
    parser.add_argument("--workdir", help="working root (default ./runs, or LIMIT_WORKDIR)")
    parser.add_argument(
        "--artifacts", help="artifact root: a folder or s3://bucket/prefix (default <workdir>/artifacts)"
    )
