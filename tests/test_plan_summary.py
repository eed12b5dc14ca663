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

from limit.backends.profile import load_profile
from limit.cli import main as cli
from limit.plan import build_plan
from limit.plan.summary import Slots, summarize, wall_clock
from limit.spec.study import STUDIES_DIR, load_study


def test_plan_summary_of_the_paper_grid(capsys):
    profile = load_profile("gpu")
    plan = build_plan(load_study("full"), gpu=profile.gpu)
    assert cli(["plan", "full", "--summary"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) < 22 and "unknown" not in out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    by_kind = {
        kind: sum(plan.gpu_hours(s.id) for s in plan.by_kind(kind)) for kind in ("finetune", "gauntlet", "generate")
    }
    finetunes = plan.by_kind("finetune")
    assert lines["finetune"][1:4] == [str(len(finetunes)), str(len(finetunes)), f"({8 * len(finetunes)})"]
    assert by_kind["finetune"] == sum(plan.costs[s.id].gpu_hours for s in finetunes)
    for kind, hours in by_kind.items():
        assert lines[kind][4] == f"~{hours:,.1f}", kind
    assert lines["judge"][1] == "12" and lines["report"][1] == "1"
    # 12 pairs x 3 seeds x 300 prompts at alpaca-eval's gpt-4-0613 price, ~730 tokens per judgment
    assert "judge: gpt-4-0613, 10,800 calls, ~$237 at $0.030/1k tokens" in out
    gpus = sum(by_kind.values()) * profile.gpu_hour_usd
    assert (
        f"dollars: GPUs ~${gpus:,.0f} at $2.50/GPU-hour (profile gpu_hour_usd) + judge ~$237 = ~${gpus + 237:,.0f}"
        in out
    )
    wall = wall_clock(plan, profile.slots)
    assert f"wall-clock: ~{wall / 24:,.1f} days, at most 4 GPU pods and 16 pods at once" in out
    # the four v0 files too large for the shared folder are sized from their upstream rows, and say so
    assert "bigbench_elementary_math_qa, hellaswag, mmlu, squad sized from upstream row counts" in out


def test_wall_clock_schedules_gpu_pods_under_the_semaphore():
    """With one GPU pod at a time the study takes every GPU step in turn; with no cap, its longest chain."""
    plan = build_plan(load_study("full"))
    pod_hours = {s.id: plan.gpu_hours(s.id) / s.resources.gpus for s in plan.order() if s.resources.gpus}
    assert wall_clock(plan, Slots(gpu_pods=1)) == pytest.approx(sum(pod_hours.values()))
    finish: dict[str, float] = {}
    for step in plan.order():
        finish[step.id] = max((finish[d] for d in step.deps), default=0.0) + pod_hours.get(step.id, 0.0)
    assert wall_clock(plan, Slots()) == pytest.approx(max(finish.values()))
    assert wall_clock(plan, Slots()) < wall_clock(plan, Slots(gpu_pods=4)) < wall_clock(plan, Slots(gpu_pods=1))


def test_a_prompt_set_of_unknown_size_says_what_to_give(tmp_path):
    data = yaml.safe_load((STUDIES_DIR / "sweep-7b.yaml").read_text())
    del data["prompts"]["lima-test"]["expect"]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = build_plan(load_study(str(path)))
    summary = summarize(plan, price=3e-5, slots=Slots(4), hour_usd=2.0)
    assert summary.unknown == {"generate": "a prompt set of unknown size (give it expect: rows, tokens_mean)"}
    assert summary.wall_hours is None and summary.dollars == (None, None)
    assert summary.judge.unknown_prompts == ["lima-test"]


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


def test_plan_lists_each_gpu_evaluation_estimate(capsys):
    plan = build_plan(load_study("full"), gpu=load_profile("gpu").gpu)
    assert cli(["plan", "full"]) == 0
    out = capsys.readouterr().out
    gauntlet = {plan.inference[s.id].gpu_hours for s in plan.by_kind("gauntlet") if s.input.tags["model"] == "mpt-7b"}
    (hours,) = gauntlet  # every 7B gauntlet step scores the same suite: one estimate
    assert f"gauntlet on mpt-7b: 21 steps, each ~{hours:,.2f} GPU-hours" in out
    costs = plan.to_json()["inference_costs"]
    assert len(costs) == len(plan.by_kind("gauntlet")) + len(plan.by_kind("generate"))
    assert all(c["gpu_hours"] > 0 and c["unknown"] is None for c in costs.values())
