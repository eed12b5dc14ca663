"""The calibrate step: the replay of the release agrees with kappa 1, a judge that always prefers the answer
shown first with kappa about 0, the rerun asks the judge nothing."""

from __future__ import annotations

import json
from pathlib import Path

from limit.judge.calibration import calibration_set
from limit.judge.ranking import FIRST_WINS
from limit.judge.replay_server import JudgeServer, ReplayJudgeServer, Reply
from limit.spec.study import JudgeSpec
from limit.steps.inputs import CalibrateInput


def test_replayed_release_gives_kappa_1_and_a_rerun_costs_nothing(shared: Path, limit_env: Path, monkeypatch):
    from limit.runner import run_step

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    release = str(shared / "limit_release")
    with ReplayJudgeServer(calibration_set(Path(release), 12, seed=0)) as server:
        judge = JudgeSpec(base_url=server.base_url, max_retries=1, retry_wait=0)
        inp = CalibrateInput(judge=judge, release=release, pairs=12, seed=0).model_dump_json()
        summary = run_step("calibrate", inp)
        assert summary["kappa"] == 1.0 and summary["agreement"] == 1.0 and summary["failures"] == 0
        asked = server.requests
        assert run_step("calibrate", inp) == summary and server.requests == asked


def test_a_position_biased_judge_gets_kappa_about_0(shared: Path, limit_env: Path, monkeypatch):
    """alpaca-eval shows each pair in a seeded order, so "always the first" is a coin flip against GPT-4-0613:
    kappa about 0, meaning 0 lies in its 95% interval (here about [-0.2, 0.4] on 40 pairs), raw agreement's
    interval holds 0.5, and every decided verdict goes to the answer shown first."""
    from limit.execution.store import Store
    from limit.runner import run_step
    from limit.steps import step_key

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with JudgeServer(lambda *_: Reply(FIRST_WINS)) as server:
        judge = JudgeSpec(base_url=server.base_url, max_retries=1, retry_wait=0)
        inp = CalibrateInput(judge=judge, release=str(shared / "limit_release"), pairs=40, seed=0)
        summary = run_step("calibrate", inp.model_dump_json())
    found = json.loads(Store.open().read_text(f"calibrate/{step_key('calibrate', inp)}", "calibration.json"))
    assert summary["first_position_share"] == found["first_position_share"] == 1.0 and found["failures"] == 0
    low, high = found["kappa_ci95"]
    assert low <= 0.0 <= high and low <= found["kappa"] <= high and summary["kappa"] == found["kappa"]
    low, high = found["agreement_ci95"]
    assert low <= 0.5 <= high  # a coin's agreement; the replay's is 1


def test_the_report_section_and_metrics_show_the_calibration():
    from limit.report.markdown import calibration_section
    from limit.steps.report import calibration_metrics

    found = {"status": "ready", "judge": "gpt-4-0613", "pairs": 12, "decided": 12, "failures": 0}
    found |= {"agreement": 1.0, "agreement_ci95": [1.0, 1.0], "kappa": 1.0, "kappa_ci95": [1.0, 1.0]}
    found |= {"first_position_share": 0.5}
    assert "| 12 | 12 | 0 | 1.000 | [1.000, 1.000] | 1.000 |" in "\n".join(calibration_section({"calibration": found}))
    assert calibration_metrics({"calibration": found})["calibration.kappa_ci95_low"] == 1.0
    assert calibration_section({"calibration": None}) == []


def test_a_missing_release_fails_the_step_and_commits_nothing(limit_env: Path, tmp_path: Path):
    import pytest

    from limit.errors import LimitError
    from limit.execution.store import Store
    from limit.runner import run_step
    from limit.steps import step_key

    inp = CalibrateInput(judge=JudgeSpec(base_url="http://127.0.0.1:9/v1"), release=str(tmp_path), pairs=4, seed=0)
    with pytest.raises(LimitError, match="no released verdicts"):
        run_step("calibrate", inp.model_dump_json())
    assert Store.open().manifest(f"calibrate/{step_key('calibrate', inp)}") is None
