"""A warm step process (forked from the local backend's preloaded server) behaves as the plain subprocess of
the same argv: the same output, the same exit code, a bad input's one line (its session and signals: the
stop and kill tests of tests/test_study_local.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from limit.backends import warm


@pytest.fixture
def env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}


def both(argv: list[str], env: dict[str, str], tmp_path: Path, monkeypatch) -> dict[str, tuple[int, str]]:
    out = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("LIMIT_WARM_STEPS", mode)
        log = tmp_path / f"{mode}.log"
        proc = warm.start(argv, env, log)
        assert isinstance(proc, warm.WarmProcess) == (mode == "1")
        out[mode] = (proc.wait(timeout=300), log.read_text())
    return out


def test_a_warm_process_prints_and_exits_as_the_subprocess(env, tmp_path, monkeypatch):
    runs = both(["limit", "plan", "tiny", "--summary"], env, tmp_path, monkeypatch)
    assert runs["0"] == runs["1"] and runs["1"][0] == 0 and "study tiny: 19 steps" in runs["1"][1]


def test_a_bad_step_input_is_one_line_and_exit_2_in_a_warm_process(env, tmp_path, monkeypatch):
    runs = both(["limit", "step", "select", "--input", "{not json"], env, tmp_path, monkeypatch)
    assert runs["0"] == runs["1"]
    code, log = runs["1"]
    assert code == 2 and log.count("\n") == 1 and log.startswith("limit: error: step select --input")
    assert "Traceback" not in log
