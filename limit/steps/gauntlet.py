"""gauntlet step: one model (a base model, or one epoch of a finetune) on the study's Eval Gauntlet.

Writes `scores.json` ({benchmarks, categories, average, complete, ...}) and per-row details under
`details/`. Each finished benchmark is persisted at once, so a retried pod resumes where it stopped.
"""

from __future__ import annotations

import json

import mlflow

from limit.errors import LimitError
from limit.gauntlet.benchmarks import CATEGORIES
from limit.gauntlet.evaluate import score_model
from limit.models import model_location
from limit.steps.context import StepContext
from limit.steps.inputs import GauntletInput


def _model(inp: GauntletInput, ctx: StepContext) -> tuple[str, bool, str | None]:
    """(from_pretrained location, trust_remote_code, hub revision) of the evaluated model."""
    if inp.model is not None:
        return model_location(inp.model, ctx.workdir), inp.model.trust_remote_code, inp.model.revision
    if inp.selection is not None:
        choice = json.loads((ctx.fetch(inp.selection) / "choice.json").read_text())
        return str(ctx.fetch(choice["finetune"], sub=choice["sub"])), False, None
    if inp.finetune is None or inp.epoch is None:
        raise LimitError("step gauntlet --input: give model, selection, or finetune and epoch")
    return str(ctx.fetch(inp.finetune, sub=f"epoch-{inp.epoch}")), False, None


def gauntlet(inp: GauntletInput, ctx: StepContext) -> dict:
    location, trust_remote_code, revision = _model(inp, ctx)
    ctx.restore("details")  # benchmarks an earlier attempt finished
    scores = score_model(
        location,
        inp.gauntlet,
        ctx.workdir,
        trust_remote_code=trust_remote_code,
        revision=revision,
        resume_dir=ctx.out / "details",
        on_benchmark=lambda _: ctx.persist("details"),
    )
    (ctx.out / "scores.json").write_text(json.dumps(scores, indent=2, sort_keys=True))

    for name, result in scores["benchmarks"].items():
        mlflow.log_metrics({f"{name}.accuracy": result["accuracy"], f"{name}.score": result["score"]})
    if scores["missing"]:
        mlflow.set_tag("gauntlet.missing", ",".join(scores["missing"])[:250])

    summary: dict = {"complete": scores["complete"], "examples": scores["examples"]}
    if scores["average"] is not None:
        summary["average"] = scores["average"]
    for category in CATEGORIES:
        if scores["categories"][category] is not None:
            summary[category] = scores["categories"][category]
    return summary
