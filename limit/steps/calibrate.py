"""calibrate step: the study's judge on released GPT-4-0613 verdicts (limit/judge/calibration.py).

Asks `pairs` seeded pairs from the authors' release under the judge's own cache (`cache/`, persisted, so a
retried step does not pay twice; a completed step is reused like any other, so a rerun asks nothing) and
writes `calibration.json`: raw agreement and Cohen's kappa with intervals, failures, the first-position share.
Without the release the step fails and commits nothing (the planner refuses such a plan first).
"""

from __future__ import annotations

import json

from limit.errors import LimitError
from limit.execution.context import StepContext
from limit.execution.locations import local_path
from limit.judge.backends import judge_name, make_judge
from limit.judge.calibration import calibrate as ask
from limit.judge.calibration import calibration_set
from limit.models.base import model_location
from limit.steps.inputs import CalibrateInput


def calibrate(inp: CalibrateInput, ctx: StepContext) -> dict:
    release = local_path(inp.release)
    rows = calibration_set(release, inp.pairs, inp.seed) if release.is_dir() else []
    if not rows:
        raise LimitError(f"judge.calibrate: no released verdicts at {inp.release} (judge.calibration_release)")
    local_model = model_location(inp.judge_model, ctx.workdir) if inp.judge_model else None
    ctx.restore("cache")
    found = ask(make_judge(inp.judge, local_model), rows, inp.seed, ctx.out / "cache" / "calibration.json")
    if (ctx.out / "cache").exists():
        ctx.persist("cache")
    out = {"judge": judge_name(inp.judge), "release": inp.release, "seed": inp.seed} | found
    (ctx.out / "calibration.json").write_text(json.dumps(out, indent=2))
    return {
        k: out[k] for k in ("pairs", "failures", "agreement", "kappa", "first_position_share") if out[k] is not None
    }
