"""Judge calibration against the release's GPT-4-0613 verdicts: a replay of the release agrees with kappa 1,
a judge that always picks the answer shown first with kappa near 0 (and a first-position share of 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from limit.judge.calibration import agreement, calibrate, calibration_set, kappa
from limit.judge.ranking import FIRST_WINS
from limit.judge.replay_server import JudgeServer, ReplayJudgeServer, Reply


def test_kappa_and_agreement_by_hand():
    ref = np.array([1.0, 1.0, 2.0, 2.0])
    assert kappa(ref, ref) == 1.0 and kappa(ref, np.array([2.0, 2.0, 1.0, 1.0])) == -1.0
    assert kappa(ref, np.array([1.0, 2.0, 1.0, 2.0])) == pytest.approx(0.0)
    found = agreement([1, 1, 2, 2], [1, None, 2, 1], shown_first=[1, 2, 2, 1])
    assert (found["decided"], found["failures"], found["agreement"]) == (3, 1, pytest.approx(2 / 3))
    assert found["first_position_share"] == 1.0  # every decided verdict went to the answer shown first


def judged(server: JudgeServer, rows: list[dict], tmp_path: Path, monkeypatch) -> dict:
    from limit.judge.openai_backend import OpenAIJudge
    from limit.spec.study import JudgeSpec

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with server:
        spec = JudgeSpec(base_url=server.base_url, model=server.model, max_retries=1, retry_wait=0)
        return calibrate(OpenAIJudge(spec), rows, seed=1, cache=tmp_path / "calibration.json")


def test_a_replay_of_the_release_agrees_and_a_position_biased_judge_does_not(shared, tmp_path, monkeypatch):
    rows = calibration_set(shared / "limit_release", 40, seed=3)
    assert len(rows) == 40 and rows == calibration_set(shared / "limit_release", 40, seed=3)
    replayed = judged(ReplayJudgeServer(rows), rows, tmp_path / "replay", monkeypatch)
    assert replayed["kappa"] == 1.0 and replayed["agreement"] == 1.0 and replayed["failures"] == 0
    assert replayed["kappa_ci95"] == [1.0, 1.0]
    biased = judged(JudgeServer(lambda *_: Reply(FIRST_WINS)), rows, tmp_path / "biased", monkeypatch)
    assert biased["first_position_share"] == 1.0 and abs(biased["kappa"]) < 0.35
    low, high = biased["kappa_ci95"]
    assert low < 0.2 and low <= biased["kappa"] <= high
