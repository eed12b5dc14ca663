"""`limit check-gpu`'s plumbing, checked on CPU, so that a lent GPU's minutes are not spent on a typo: every
stage runs in its own process on tiny shapes, results land in one JSON, a stage past its limit is stopped
with everything it launched."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, run_env

from limit.gpucheck import NAMES


def check_gpu(*args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "limit.cli", "check-gpu", "--smoke", "--device", "cpu", *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=run_env())


def test_check_gpu_smoke_runs_every_stage_on_cpu(tmp_path: Path):
    out = tmp_path / "check.json"
    result = check_gpu("--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    stages = json.loads(out.read_text())["stages"]
    assert list(stages) == list(NAMES) and all(s["ok"] and s["seconds"] > 0 for s in stages.values())
    assert [line.split()[1] for line in result.stdout.splitlines()[:-1]] == list(NAMES)  # the table
    assert stages["exactness"]["per_document"]["flex"] < 1e-4 and stages["exactness"]["gradients"]["sdpa"] < 1e-4
    trainer = stages["trainer"]
    assert trainer["killed_after_epoch_1"] and trainer["summary"]["resumed_from_step"] == 5
    assert trainer["optimizer_steps"] == 10 and trainer["summary"]["probe_peak_gib"] > 0
    assert {c["attention"] for c in stages["speed"]["cases"]} == {"sdpa", "eager"}
    assert stages["gauntlet"]["dtypes"]["float32"]["prediction_mismatches"] == 0
    assert stages["cuda_tests"]["passed"] > 0 and not stages["cuda_tests"].get("failed")


def test_a_stage_past_its_budget_is_stopped_with_what_it_launched(tmp_path: Path):
    out = tmp_path / "check.json"
    started = time.time()
    result = check_gpu("--stages", "trainer", "--budget-s", "6", "--out", str(out))
    assert result.returncode == 1 and time.time() - started < 60
    [stage] = json.loads(out.read_text())["stages"].values()
    assert not stage["ok"] and "limit" in stage["error"]
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert not leftover, f"processes of the stopped stage are still running: {leftover}"


def test_an_unknown_stage_is_one_line(tmp_path: Path):
    result = check_gpu("--stages", "speed,warp", "--out", str(tmp_path / "x.json"))
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "'warp'" in result.stderr
