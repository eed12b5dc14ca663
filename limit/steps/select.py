"""select step: a finetune's best epoch by gauntlet average (ties go to the earliest epoch).

Writes `choice.json`: {epoch, finetune, sub: "epoch-N", average, tied, epochs: [{epoch, average, categories}]},
which the generate step and the report read (`tied`: every epoch sharing the best average).
With `keep: selected` the other epochs' weights are then deleted from the finetune's outputs (their gauntlet
scores stay): a 30B epoch is ~60 GB.
An epoch whose average is null (an incomplete category) cannot be chosen; if none has one, the step fails.
The per-epoch curves go to MLflow as metrics with step=epoch.
"""

from __future__ import annotations

import json
import sys

import mlflow

from limit.errors import LimitError
from limit.steps.context import StepContext
from limit.steps.inputs import SelectInput


def best_epoch(epochs: list[dict]) -> dict:
    """The epoch with the highest average; the earliest among equals. Epochs without an average lose."""
    scored = [e for e in epochs if e["average"] is not None]
    if not scored:
        raise LimitError("select: no epoch has a complete gauntlet average (a category is incomplete)")
    return max(sorted(scored, key=lambda e: e["epoch"]), key=lambda e: e["average"])


def select(inp: SelectInput, ctx: StepContext) -> dict:
    if not inp.epochs:
        raise LimitError("step select --input: epochs: empty")
    epochs = []
    for entry in sorted(inp.epochs, key=lambda e: e.epoch):
        scores = json.loads((ctx.fetch(entry.gauntlet) / "scores.json").read_text())
        epochs.append({"epoch": entry.epoch, "average": scores["average"], "categories": scores["categories"]})

    best = best_epoch(epochs)
    tied = [e["epoch"] for e in epochs if e["average"] == best["average"]]
    if len(tied) > 1:
        print(f"select: epochs {tied} tie at average {best['average']:.4f}; taking the earliest", file=sys.stderr)
    choice = {
        "epoch": best["epoch"],
        "finetune": inp.finetune,
        "sub": f"epoch-{best['epoch']}",
        "average": best["average"],
        "tied": tied,
        "epochs": epochs,
    }
    (ctx.out / "choice.json").write_text(json.dumps(choice, indent=2))

    for e in epochs:
        if e["average"] is not None:
            mlflow.log_metric("gauntlet_average", e["average"], step=e["epoch"])
        for category, value in e["categories"].items():
            if value is not None:
                mlflow.log_metric(f"gauntlet.{category}", value, step=e["epoch"])
    mlflow.set_tag("chosen_epoch", str(best["epoch"]))
    if inp.keep == "selected":
        others = [f"epoch-{e['epoch']}" for e in epochs if e["epoch"] != best["epoch"]]
        ctx.store.prune(inp.finetune, others, f"training.keep: selected; {ctx.ref} chose epoch {best['epoch']}")
        print(f"select: deleted the weights of {', '.join(others) or 'no other epoch'}", file=sys.stderr)
    print(f"select: epoch {best['epoch']} (average {best['average']:.4f})", file=sys.stderr)
    return {"epoch": best["epoch"], "average": best["average"], "ties": len(tied)}
