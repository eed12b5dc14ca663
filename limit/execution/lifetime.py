"""A step process ends with the process that started it: no orphan goes on holding a node's GPUs, or
committing a step, after its `limit run` or torchrun died, however it died.

The starter names itself in LIMIT_PARENT_PID (the local backend for its steps, the torchrun launcher for its
ranks); the started process asks the kernel for SIGTERM when its parent dies (Linux's PR_SET_PDEATHSIG,
which survives the exec into torchrun), and watches that pid too. SIGTERM unwinds a step as a stop does: its
attempt is recorded as killed, its MLflow run ends KILLED, its lock is released. A process that has not ended
LIMIT_STOP_GRACE_S (60 s) after its parent died is killed: a rank blocked in a collective (gloo, NCCL) never
runs Python's SIGTERM handler, and would otherwise live on under init, holding its GPU.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PARENT_PID = "LIMIT_PARENT_PID"
PR_SET_PDEATHSIG = 1
WATCH_S = 1.0


def started_by(env: dict[str, str], pid: int | None = None) -> dict[str, str]:
    """`env` for a child that should end with this process (or with `pid`)."""
    return {**env, PARENT_PID: str(pid or os.getpid())}


def end_with_parent() -> None:
    """SIGTERM to this process when the process named in LIMIT_PARENT_PID ends (at once if it has already)."""
    named = os.environ.get(PARENT_PID)
    if not named or not named.isdigit():
        return
    parent = int(named)
    if os.getppid() == parent:
        term_when_parent_dies()
    threading.Thread(target=_watch, args=(parent,), name="limit-parent-watch", daemon=True).start()


def term_when_parent_dies() -> None:
    """SIGTERM to this process when its parent process ends (Linux; elsewhere the watch alone)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _watch(parent: int) -> None:
    """Poll the parent's pid (where the kernel cannot tell us: not Linux, a process in between, a parent
    that died before we asked), SIGTERM this process when it is gone, and SIGKILL it after the grace period."""
    while _alive(parent):
        time.sleep(WATCH_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(float(os.environ.get("LIMIT_STOP_GRACE_S", "60")))
    os.kill(os.getpid(), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's (a reused pid, most likely: treat it as ours)
        return True
    return True
