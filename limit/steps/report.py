"""Report: the paper's tables (gauntlet scores, judged win rates) as Markdown, JSON and a figure, and the
execution's comparison view in MLflow.

Reads each run's choice and chosen-epoch scores, each baseline's scores and each pair's result (limit/report
assembles, renders and tabulates; `limit report` renders the same without a study execution). In MLflow: one
`summary` run per model (finetuned and base) beside the step runs, every one with the same metric keys
(limit/report/table.py), one `replicates` run per replicate group (the mean and spread over seeds), and the
files and headline numbers on the parent run.
"""

from __future__ import annotations

from typing import Any

from limit import report as rendering
from limit.execution import tracking
from limit.execution.context import StepContext
from limit.report.table import mlflow_tables, replicate_rows, summary_rows
from limit.spec.study import slug
from limit.steps.inputs import ReportInput


def report(inp: ReportInput, ctx: StepContext) -> dict[str, Any]:
    data = rendering.assemble(
        inp.study,
        inp.models,
        inp.pairs,
        ctx.store,
        calibration=inp.calibration,
        seed=inp.bootstrap_seed,
        parent_run_id=ctx.parent_run_id,
    )
    rendering.write(data, ctx.out)
    for row in summary_rows(data):
        tracking.log_child(f"summary {row['name']}", row["tags"], row["metrics"], row["curves"], row["params"])
    for row in replicate_rows(data):
        tracking.log_child(f"replicates {row['name']}", row["tags"], row["metrics"], {})
    headline = headline_metrics(data)
    tracking.log_on_parent(headline, ctx.out, rendering.FILES, mlflow_tables(data))
    return {"models": len(data["models"]), "pairs": len(data["pairs"]), **headline}


def headline_metrics(data: dict[str, Any]) -> dict[str, float]:
    """On the parent run: each model's gauntlet average, each pair's win rate of A and its judge failures."""
    out = {}
    for row in data["models"]:
        if row["average"] is not None:
            out[f"gauntlet_average.{slug(row['name'])}"] = row["average"]
    for row in data["pairs"]:
        name = f"{slug(row['a'])}.vs.{slug(row['b'])}.{slug(row['prompts'])}"
        if row.get("win_rate_a") is not None:
            out[f"win_rate.{name}"] = row["win_rate_a"]
        out[f"failures.{name}"] = sum(s.get("failures", 0) for s in row.get("seeds", {}).values())
        for bound, value in zip(("low", "high"), row.get("ci95") or [], strict=True):
            out[f"win_rate_ci95_{bound}.{name}"] = value  # the judge step's interval, the report's too
    for row in data["models"]:
        if row.get("contamination"):
            out[f"contamination.{slug(row['dataset'])}"] = row["contamination"]["any"]["share"]
    return out | agreement_metrics(data) | calibration_metrics(data)


def calibration_metrics(data: dict[str, Any]) -> dict[str, float]:
    """The judge against GPT-4-0613 on the released verdicts: agreement, kappa, their intervals, failures and
    the first-position share."""
    found = data.get("calibration") or {}
    out = {}
    for name in ("agreement", "kappa"):
        if found.get(name) is not None:
            out[f"calibration.{name}"] = found[name]
        for bound, value in zip(("low", "high"), found.get(f"{name}_ci95") or [None, None], strict=True):
            if value is not None:
                out[f"calibration.{name}_ci95_{bound}"] = value
    for name in ("pairs", "failures", "first_position_share"):
        if found.get(name) is not None:
            out[f"calibration.{name}"] = found[name]
    return out


def agreement_metrics(data: dict[str, Any]) -> dict[str, float]:
    """Per group of judged models: Kendall's tau of the gauntlet and judge orders, its interval, how many
    model pairs the two order the other way round."""
    out = {}
    for group in data.get("agreement") or []:
        name = f"{slug(group['base'] or 'models')}.{slug(group['prompts'])}"
        tau, ci = group["tau"].get("tau"), group["tau"].get("ci95") or []
        if tau is not None:
            out[f"agreement_tau.{name}"] = tau
        for bound, value in zip(("low", "high"), ci, strict=True):
            out[f"agreement_tau_ci95_{bound}.{name}"] = value
        out[f"agreement_disagreements.{name}"] = len(group["disagreements"])
    return out
