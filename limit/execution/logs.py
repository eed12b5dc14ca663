"""Third-party libraries' output (logging, warnings, progress bars) into a file; the project's own lines on
the console.

In a step, everything a library says already lands in the step's log. A console command (`limit judge-pair`,
`limit reproduce-winrates`, `limit gauntlet`) would otherwise print it: alpaca-eval alone logs an ERROR with
the whole completion ("... manually fix the score pair") for every judgment it cannot parse, and tqdm bars
from alpaca-eval, lm-eval and datasets ran to thousands of lines. `to_file` routes the root logger and the
process's stderr (file descriptor 2, where every progress bar writes) there, and restores both afterwards;
`console()` is the terminal meanwhile, for the project's own progress (`Progress`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from limit.execution.progress import duration

_console: list[TextIO] = []  # the terminal's stderr while `to_file` holds the process's


def console() -> TextIO:
    """Where the project's own lines go: the terminal, also while `to_file` sends stderr to a log."""
    return _console[-1] if _console else sys.stderr


@contextlib.contextmanager
def to_file(path: Path) -> Iterator[Path]:
    """While inside, library logging and everything written to stderr go to `path` (appended)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = (root.handlers[:], root.level)
    root.handlers = [handler]  # a handler on the root: logging.error() no longer falls back to the console
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        with _stderr_to(handler.stream):
            yield path
    finally:
        logging.captureWarnings(False)
        root.handlers, level = saved
        root.setLevel(level)
        handler.close()


@contextlib.contextmanager
def _stderr_to(log: TextIO) -> Iterator[None]:
    """Both stderrs to `log`: the file descriptor (C extensions, subprocesses) and Python's `sys.stderr` (which
    a progress bar made meanwhile writes to)."""
    sys.stderr.flush()
    terminal, python_stderr = os.dup(2), sys.stderr
    _console.append(os.fdopen(os.dup(terminal), "w", buffering=1))
    os.dup2(log.fileno(), 2)
    sys.stderr = log
    try:
        yield
    finally:
        log.flush()
        sys.stderr = python_stderr
        os.dup2(terminal, 2)
        os.close(terminal)
        _console.pop().close()


class Progress:
    """k of N done, the rate and the time left, one console line each time one more is done."""

    def __init__(self, what: str, total: int = 0):
        self.what, self.total = what, total
        self.done, self.started = 0, time.monotonic()

    def advance(self, note: str = "", total: int | None = None) -> None:
        """One more done; `total` where it is learnt on the way (what a resumed run has left)."""
        self.done += 1
        self.total = total or self.total
        each = (time.monotonic() - self.started) / self.done
        left = duration((self.total - self.done) * each)
        note = f" {note}" if note else ""
        line = f"{self.what}: {self.done}/{self.total}{note} ({each:.1f} s each, {left} left)"
        print(line, file=console(), flush=True)
