"""gauntlet step: one model (a base model, or one epoch of a finetune) on the study's Eval Gauntlet.

Writes `scores.json` ({benchmarks, categories, average, complete, ...}) and per-row details under
`details/`. Each finished benchmark is persisted at once, so a retried pod resumes where it stopped.
"""

from __future__ import annotations

import json

import mlflow

from limit.costs import PeakMemory
from limit.errors import LimitError
from limit.execution import outputs, progress
from limit.execution.context import StepContext
from limit.gauntlet.evaluate import score_model
from limit.gauntlet.scoring import metrics
from limit.models.base import Pretrained, model_location
from limit.steps.inputs import GauntletInput


def _model(inp: GauntletInput, ctx: StepContext) -> Pretrained:
    """The evaluated model: a base model as the spec names it, or a finetune's epoch (its own code only)."""
    if inp.model is not None:
        spec = inp.model
        return Pretrained(model_location(spec, ctx.workdir), spec.revision, spec.trust_remote_code)
    if inp.selection is not None:
        choice = outputs.read(ctx.fetch(inp.selection) / "choice.json", outputs.Choice)
        return Pretrained(str(ctx.fetch(choice.finetune, sub=choice.sub)))
    if inp.finetune is None or inp.epoch is None:
        raise LimitError("step gauntlet --input: give model, selection, or finetune and epoch")
    return Pretrained(str(ctx.fetch(inp.finetune, sub=f"epoch-{inp.epoch}")))


def gauntlet(inp: GauntletInput, ctx: StepContext) -> dict:
    peak = PeakMemory.from_here()  # before the model loads: the same terms as the planner's estimate
    model = _model(inp, ctx)
    ctx.restore("details")  # benchmarks an earlier attempt finished
    scores = score_model(
        model,
        inp.gauntlet,
        ctx.workdir,
        resume_dir=ctx.out / "details",
        on_benchmark=lambda name, done, total: _finished(ctx, name, done, total),
    )
    (ctx.out / "scores.json").write_text(json.dumps(scores, indent=2, sort_keys=True))
    typed = outputs.Scores.model_validate(scores)

    # The keys every gauntlet run, select run and summary run share (scoring.metrics), plus raw accuracies.
    mlflow.log_metrics(metrics(typed))
    mlflow.log_metrics({f"per_benchmark.{name}.accuracy": r.accuracy for name, r in typed.benchmarks.items()})
    if typed.missing:
        mlflow.set_tag("gauntlet.missing", ",".join(typed.missing)[:250])

    summary: dict = {"complete": scores["complete"], "examples": scores["examples"]}
    summary["memory_peak_gib"] = round(peak.peak_gib(), 4)
    summary |= {k: v for k, v in metrics(typed).items() if k.startswith("gauntlet.")}  # the average and categories
    return summary


def _finished(ctx: StepContext, name: str, done: int, total: int) -> None:
    ctx.persist("details")
    progress.emit("gauntlet", benchmark=name, done=done, total=total)
