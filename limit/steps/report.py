"""Report: the paper's two tables (gauntlet scores, judged win rates) as Markdown, JSON and a figure.

Reads each run's `select/choice.json`, each baseline's `gauntlet/scores.json` and each pair's
`judge/result.json`; logs the files and the headline numbers on the study's parent MLflow run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlflow
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from limit.gauntlet.benchmarks import CATEGORY_TITLES as CATEGORIES  # the paper's columns, in its order
from limit.judge.winrate import percent
from limit.spec import slug
from limit.steps.context import StepContext
from limit.steps.inputs import ReportInput


def report(inp: ReportInput, ctx: StepContext) -> dict[str, Any]:
    models = [_model_row(m, ctx) for m in inp.models]
    pairs = [_pair_row(p, ctx) for p in inp.pairs]
    data = {"study": inp.study, "models": models, "pairs": pairs}
    (ctx.out / "report.json").write_text(json.dumps(data, indent=2))
    (ctx.out / "report.md").write_text(render_markdown(data))
    plot(data, ctx.out / "report.png")

    summary: dict[str, Any] = {"models": len(models), "pairs": len(pairs)}
    for row in models:
        if row["average"] is not None:
            summary[f"gauntlet_average.{slug(row['name'])}"] = row["average"]
    for row in pairs:
        name = f"{slug(row['a'])}.vs.{slug(row['b'])}.{slug(row['prompts'])}"
        if row["win_rate_a"] is not None:
            summary[f"win_rate.{name}"] = row["win_rate_a"]
        summary[f"failures.{name}"] = sum(s.get("failures", 0) for s in row.get("seeds", {}).values())
    parent = os.environ.get("LIMIT_PARENT_RUN_ID")
    if parent:
        log_on_parent(parent, ctx.out, summary)
    return summary


def log_on_parent(parent_run_id: str, folder: Path, summary: dict[str, Any]) -> None:
    """The study's parent run carries the report files and its headline numbers (comparison views); once."""
    client = mlflow.MlflowClient()
    if any(a.path == "report.md" for a in client.list_artifacts(parent_run_id)):
        return  # the execution that ran the report step logged it already
    for name in ("report.md", "report.json", "report.png"):
        if (folder / name).is_file():
            client.log_artifact(parent_run_id, str(folder / name))
    for name, value in summary.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            client.log_metric(parent_run_id, name, float(value))


def _model_row(model, ctx: StepContext) -> dict[str, Any]:
    row: dict[str, Any] = {"name": model.name, "kind": model.kind, "model": model.model, "dataset": model.dataset}
    if model.selection:
        choice = json.loads((ctx.fetch(model.selection) / "choice.json").read_text())
        chosen = next(e for e in choice["epochs"] if e["epoch"] == choice["epoch"])
        if model.gauntlet:  # gauntlet.select_limit: the chosen epoch was scored again on the whole suite
            chosen = json.loads((ctx.fetch(model.gauntlet) / "scores.json").read_text())
        row.update(
            epoch=choice["epoch"],
            average=chosen["average"],
            categories=chosen["categories"],
            epochs=[{"epoch": e["epoch"], "average": e["average"]} for e in choice["epochs"]],
            selection=choice.get("selection"),
        )
    else:
        scores = json.loads((ctx.fetch(model.gauntlet) / "scores.json").read_text())
        row.update(epoch=None, average=scores["average"], categories=scores["categories"], epochs=[])
    row["complete"] = row["average"] is not None
    return row


def _pair_row(pair, ctx: StepContext) -> dict[str, Any]:
    result = json.loads((ctx.fetch(pair.judge) / "result.json").read_text())
    return {"a": pair.a, "b": pair.b, "prompts": pair.prompts, **result}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _lengths(lengths: dict | None) -> str:
    """Mean response length in characters, as AlpacaEval measures it."""
    if not lengths:
        return "n/a"
    return "/".join(f"{lengths[side]['mean']:.0f}" if lengths.get(side) else "n/a" for side in ("a", "b"))


def _cost(cost: dict | None) -> str:
    if not cost:
        return "n/a"
    dollars = cost.get("dollars")
    tokens = f"{cost['tokens']:,.0f} tokens" if cost.get("tokens") is not None else "tokens n/a"
    return f"{tokens}, ${dollars:.2f}" if dollars is not None else f"{tokens}, price unknown"


def render_markdown(data: dict[str, Any]) -> str:
    lines = [f"# Study `{data['study']}`", "", "## Eval Gauntlet (rescaled accuracy; epoch chosen by average)", ""]
    lines.append("| Model | Dataset | Epoch | Av | " + " | ".join(CATEGORIES.values()) + " |")
    lines.append("|---|---|---|---|" + "---|" * len(CATEGORIES))
    for row in data["models"]:
        cats = row["categories"] or {}
        cells = [_fmt(cats.get(c)) for c in CATEGORIES]
        dataset = row["dataset"] or "(base model)"
        epoch = row["epoch"] if row["epoch"] is not None else "-"
        lines.append(f"| {row['name']} | {dataset} | {epoch} | {_fmt(row['average'])} | " + " | ".join(cells) + " |")
    if any(not row["complete"] for row in data["models"]):
        lines += ["", "n/a: a category is missing a benchmark, so no average is reported (never over fewer)."]
    if data["pairs"]:
        lines += ["", "## Pairwise judge (win rate of A, %, ties and failures excluded)", ""]
        columns = ["A", "B", "Prompts", "Per seed", "Mean", "95% CI", "Seed std", "LC win rate", "W/L/T/F"]
        columns += ["Mean length A/B", "Judge cost"]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for row in data["pairs"]:
            seeds = row.get("seeds", {})
            per_seed = ", ".join(percent(s.get("win_rate_a")) for s in seeds.values())
            totals = [sum(s.get(k, 0) for s in seeds.values()) for k in ("wins_a", "wins_b", "ties", "failures")]
            ci = row.get("ci95") or [None, None]
            rates = [percent(row.get(k)) for k in ("win_rate_a", "seed_std", "lc_win_rate_a")]
            lines.append(
                f"| {row['a']} | {row['b']} | {row['prompts']} | {per_seed} | {rates[0]} | "
                f"{percent(ci[0])}-{percent(ci[1])} | {rates[1]} | {rates[2]} | "
                + "/".join(str(t) for t in totals)
                + f" | {_lengths(row.get('lengths'))} | {_cost(row.get('cost'))} |"
            )
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    """Left: gauntlet categories per model; middle: average per epoch; right: win rates with 95% CI."""
    fig = Figure(figsize=(16, 4.5))
    axes = fig.subplots(1, 3)
    models = data["models"]
    width = 0.8 / max(1, len(models))
    for i, row in enumerate(models):
        cats = row["categories"] or {}
        values = [cats.get(c) or 0.0 for c in CATEGORIES]
        axes[0].bar([x + i * width for x in range(len(CATEGORIES))], values, width, label=row["name"])
    axes[0].set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(CATEGORIES))])
    axes[0].set_xticklabels(list(CATEGORIES.values()), fontsize=8)
    axes[0].set_title("Eval Gauntlet by category")
    axes[0].axhline(0, color="black", linewidth=0.5)
    axes[0].legend(fontsize=7)
    for row in models:
        if row["epochs"]:
            epochs = [e["epoch"] for e in row["epochs"]]
            averages = [e["average"] if e["average"] is not None else float("nan") for e in row["epochs"]]
            axes[1].plot(epochs, averages, marker="o", label=row["name"])
            axes[1].scatter([row["epoch"]], [row["average"] or float("nan")], s=120, facecolors="none", edgecolors="k")
    axes[1].set_title("Gauntlet average per epoch (circle: chosen)")
    axes[1].set_xlabel("epoch")
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    if any(row["epochs"] for row in models):
        axes[1].legend(fontsize=7)
    pairs = [p for p in data["pairs"] if p.get("win_rate_a") is not None]
    labels = [f"{p['a']}\nvs {p['b']}\n({p['prompts']})" for p in pairs]
    rates = [100 * p["win_rate_a"] for p in pairs]
    errors = [
        [100 * (p["win_rate_a"] - (p.get("ci95") or [p["win_rate_a"]] * 2)[0]) for p in pairs],
        [100 * ((p.get("ci95") or [p["win_rate_a"]] * 2)[1] - p["win_rate_a"]) for p in pairs],
    ]
    axes[2].barh(range(len(pairs)), rates, xerr=errors if pairs else None, color="tab:green")
    axes[2].set_yticks(range(len(pairs)))
    axes[2].set_yticklabels(labels, fontsize=7)
    axes[2].axvline(50, color="black", linewidth=0.5, linestyle="--")
    axes[2].set_xlim(0, 100)
    axes[2].set_title("Win rate of A (%), 95% CI")
    fig.suptitle(f"Study {data['study']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
