"""The plan's totals (`limit plan --summary`, shown by `limit run` and `limit submit` too) and the pre-flight
that refuses a local run before any step starts: each missing prerequisite one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from conftest import run_env

from limit.cli import main as cli
from limit.plan import build_plan
from limit.spec.study import STUDIES_DIR, load_study


def test_plan_summary_of_the_paper_grid(capsys):
    plan = build_plan(load_study("full"))
    assert cli(["plan", "full", "--summary"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) < 20
    lines = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    finetunes = plan.by_kind("finetune")
    assert lines["finetune"][1:4] == [str(len(finetunes)), str(len(finetunes)), f"({8 * len(finetunes)})"]
    hours = sum(plan.costs[s.id].gpu_hours for s in finetunes)
    assert lines["finetune"][4] == f"~{hours:,.1f}" and lines["gauntlet"][4] == "unknown"
    assert lines["judge"][1] == "12" and lines["report"][1] == "1"
    assert "none yet for gauntlet, generate" in out  # evaluation has no estimate: said, not zero
    # 12 pairs x 3 seeds x 300 prompts at alpaca-eval's gpt-4-0613 price, ~730 tokens per judgment
    assert "judge: gpt-4-0613, 10,800 calls, ~$237 at $0.030/1k tokens" in out


def study(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((STUDIES_DIR / "tiny.yaml").read_text())
    data["name"] = "preflight"
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = data
        for key in path:
            node = node[key]
        node[last] = value
    path = tmp_path / "preflight.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_preflight_names_each_missing_prerequisite_and_starts_nothing(tmp_path, s3_env):
    s3 = boto3.client("s3")
    fixtures = Path(__file__).resolve().parents[1] / "limit" / "fixtures" / "gauntlet"
    for path in sorted(fixtures.rglob("*.jsonl"))[:2]:  # 2 of the tiny suite's 6 files
        s3.upload_file(str(path), s3_env, f"gauntlet/{path.relative_to(fixtures).as_posix()}")
    spec = study(
        tmp_path,
        judge={"backend": "openai", "api_key_env": "LIMIT_TEST_API_KEY", "bootstrap": 10},
        gauntlet__data=f"s3://{s3_env}/gauntlet",
        training__defaults__gpus=1,
    )
    workdir = tmp_path / "runs"
    env = run_env(MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'mlflow.db'}")
    for name in ("LIMIT_ARTIFACTS", "LIMIT_TEST_API_KEY", "CUDA_VISIBLE_DEVICES"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "limit.cli", "run", str(spec), "--workdir", str(workdir)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 4 and "Traceback" not in done.stderr
    assert f"{spec}: judge.api_key_env: LIMIT_TEST_API_KEY is not set" in errors[0]
    assert f"{spec}: gauntlet.data: 4 of the suite's 6 files are not in s3://{s3_env}/gauntlet" in errors[1]
    assert "2 finetune step(s) need 1 GPU(s) each, 0 visible" in errors[2]
    assert errors[3] == "limit: error: pre-flight: 3 problem(s) above; no step was started"
    assert "judge: gpt-4-0613" in done.stdout  # the plan's totals come first
    assert not (workdir / "artifacts").exists() and not (workdir / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("base_url", "problem"),
    [("http://judge.example/v1", True), ("https://judge.example/v1", False), ("http://127.0.0.1:8000/v1", False),
     ("http://localhost:8000/v1", False), ("http://[::1]:8000/v1", False)],
)  # fmt: skip
def test_preflight_refuses_plain_http_to_a_judge_off_this_machine(tmp_path, base_url, problem):
    from limit.plan.preflight import judge_transport

    spec = study(tmp_path, judge={"backend": "openai", "base_url": base_url, "bootstrap": 10})
    plan = build_plan(load_study(str(spec)))
    found = judge_transport(plan.order(), tmp_path, str(spec))
    assert found == ([f"{spec}: judge.base_url: plain http to judge.example would send the judge's key "
                      "unencrypted: use https (or a loopback address)"] if problem else [])  # fmt: skip
