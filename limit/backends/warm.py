"""Warm step processes for the local backend: a step still runs its argv's command (`limit step ...`,
through the `limit` console script's entry point, with the step's environment, log and session of its own),
but in a process forked from a server that has already imported what steps import (MLflow and its SQL store,
torch, transformers, limit's step modules), instead of a fresh interpreter that spends seconds on the same
imports before every step.

Forking keeps what a step needs exact: nothing is called before the fork, only modules are imported, and none
of limit's reads the environment at import; torch's thread count, fixed when it loaded, is set again from
the step's OMP_NUM_THREADS. The fork server ends the moment the backend does (multiprocessing's), and a step
gets SIGTERM when the fork server ends, as a subprocess does when the backend ends. An argv that is not
`limit ...`, or LIMIT_WARM_STEPS=0, runs as a plain subprocess, as an Argo pod runs it.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from limit.execution.lifetime import term_when_parent_dies
from limit.steps import KINDS

PRELOAD = [
    "limit.runner",
    *(entry.function.split(":")[0] for entry in KINDS.values()),  # every step kind's module
    "mlflow.store.tracking.sqlalchemy_store",
    "transformers.models.auto.tokenization_auto",
    "transformers.models.auto.modeling_auto",
    *(f"limit.report.{part}" for part in ("data", "figure", "markdown", "html")),  # scipy.stats, matplotlib
]

_context = None


def enabled(argv: list[str]) -> bool:
    return argv[0] == "limit" and os.environ.get("LIMIT_WARM_STEPS", "1") != "0" and sys.platform == "linux"


def start(argv: list[str], env: dict[str, str], log: Path) -> WarmProcess | subprocess.Popen:
    """The step's process: forked warm where `enabled`, else a subprocess of exactly `argv`."""
    if not enabled(argv):
        with log.open("w") as fh:
            return subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    return WarmProcess(argv, env, log)


class WarmProcess:
    """The part of subprocess.Popen the local backend uses, for a process the fork server made."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self._process = _server().Process(target=_run, args=(argv, env, str(log)), daemon=False)
        self._process.start()
        self.pid = self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(["limit"], timeout or 0)
        return self._process.exitcode


def _server():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _run(argv: list[str], env: dict[str, str], log: str) -> None:
    """In the forked process: the session, output and environment a subprocess would have had, then the CLI."""
    os.setsid()
    term_when_parent_dies()  # the fork server, which ends the moment the backend does
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for target in (1, 2):
        os.dup2(fd, target)
    os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = argv
    if "torch" in sys.modules and env.get("OMP_NUM_THREADS", "").isdigit():
        sys.modules["torch"].set_num_threads(int(env["OMP_NUM_THREADS"]))
    (script,) = entry_points(group="console_scripts", name=argv[0])  # as the `limit` executable finds it

    try:
        code = script.load()(argv[1:])
    finally:
        atexit._run_exitfuncs()  # multiprocessing ends its children with os._exit, past atexit
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)
