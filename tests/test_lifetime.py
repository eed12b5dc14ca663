"""A started process ends with the one that started it (limit/execution/lifetime.py): killed outright, a `limit run`
leaves no step behind. Here with plain Python processes; test_study_local.py and test_distributed_finetune.py
kill real `limit run`s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
from conftest import run_env, still_running

from limit.execution.lifetime import started_by

CHILD = (
    "import time; from limit.execution.lifetime import end_with_parent as e; e(); print(1, flush=True); time.sleep(99)"
)
PARENT = f"""
import os, subprocess, sys
from limit.execution.lifetime import started_by
child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], env=started_by(dict(os.environ)), start_new_session=True)
print(child.pid, flush=True)
child.wait()
"""


def test_a_child_in_its_own_session_ends_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], env=run_env(), stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    assert parent.stdout.readline().strip() == "1"  # the child asked the kernel to tell it of its parent's death
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    assert not still_running([child], timeout=10)


def test_a_process_named_as_parent_but_not_its_parent_is_watched():
    named = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], env=started_by(run_env(), named.pid), stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "1"
    named.kill()
    named.wait()
    assert child.wait(timeout=10) != 0  # SIGTERM from its watcher


def test_a_child_that_cannot_run_its_sigterm_handler_is_killed_after_the_grace_period():
    """As a rank blocked in a collective: SIGTERM does nothing (here: ignored), so the watcher's SIGKILL ends it."""
    deaf = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + CHILD
    named = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    env = {**started_by(run_env(), named.pid), "LIMIT_STOP_GRACE_S": "1"}
    child = subprocess.Popen([sys.executable, "-c", deaf], env=env, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "1"
    named.kill()
    named.wait()
    assert child.wait(timeout=15) == -signal.SIGKILL
