"""Stage `cuda_tests`: the attention tests (tests/test_attention.py) on this machine, where their CUDA cases run
(they skip without a GPU). Needs the repository's tests/ folder and pytest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from limit.gpucheck.context import CheckContext

TESTS = Path(__file__).resolve().parents[2] / "tests" / "test_attention.py"


def run(ctx: CheckContext) -> dict:
    if not TESTS.is_file():
        return {
            "ok": True,
            "skipped": f"{TESTS} is not here (an installed package has no tests)",
            "headline": "skipped",
        }
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(TESTS)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=TESTS.parents[1])
    counts = dict((word, int(n)) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error)", done.stdout))
    return {
        "ok": done.returncode == 0,
        **counts,
        "tail": done.stdout[-3000:],
        "headline": done.stdout.strip().splitlines()[-1],
    }
