"""Third-party libraries' logging (alpaca-eval, lm-eval, transformers, Python warnings) into a file.

In a step, everything a library says already lands in the step's log. A console command (`limit judge-pair`,
`limit reproduce-winrates`, `limit gauntlet`) would otherwise print it: alpaca-eval alone logs an ERROR with
the whole completion ("... manually fix the score pair") for every judgment it cannot parse, hundreds for
the released failures. `to_file` routes the root logger there instead, and restores it afterwards.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def to_file(path: Path) -> Iterator[Path]:
    """While inside, library logging goes to `path` (appended), not to the console."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = (root.handlers[:], root.level)
    root.handlers = [handler]  # a handler on the root: logging.error() no longer falls back to the console
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        root.handlers, level = saved
        root.setLevel(level)
        handler.close()
