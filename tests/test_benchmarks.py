"""The GPU benchmark's plumbing, checked on CPU, so that a lent GPU's minutes are not spent on a typo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, run_env


def test_gpu_benchmark_smoke_runs_on_cpu(tmp_path: Path):
    out = tmp_path / "gpu.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu.py", "--smoke", "--device", "cpu", "--steps", "1", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=run_env(PYTHONPATH=str(REPO)),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    cases = json.loads(out.read_text())["cases"]
    assert {(c["attention"], c["packed"]) for c in cases} == {(a, p) for a in ("eager", "sdpa") for p in (False, True)}
    assert all(c["real_tokens_per_s"] > 0 and "error" not in c for c in cases)
