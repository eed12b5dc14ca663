"""The one-row-per-model table: what each model's MLflow summary run holds and what `limit export` writes.

Every model, finetuned or base, gets the same keys: the paper's columns `gauntlet.average` and
`gauntlet.<category>` (at the chosen epoch), and for each judged pair it is in,
`judge.win_rate.<prompts>.vs.<opponent>` with `.ci95_low` and `.ci95_high`, from its own side; then
`per_benchmark.<benchmark>`, `select.chosen_epoch` and `train.tokens` (0 for a base model: it was not
finetuned). A run in a sweep or a replicate adds `train.rows` and `train.seed`; each comparison the report made
with the model as A adds `paired.<what>.<B>.difference`, `.ci95_low`, `.ci95_high` and `.distinguishable`
(1 or 0). MLflow's compare view sorts keys by code point, so these names put the paper's table at its top. A
value that is not known (an incomplete category) is left out, never 0.

`replicate_rows`: one more row per replicate group (kind `replicates`), with the same keys holding the mean
over seeds, each with a `.std` beside it, `replicates` (seeds with scores) and `select.chosen_epoch.s<seed>`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from limit.execution.outputs import Scores
from limit.gauntlet.benchmarks import CATEGORIES
from limit.gauntlet.scoring import metrics as gauntlet_metrics
from limit.spec.study import slug

TAG_COLUMNS = ("model", "kind", "base_model", "dataset")
WIN_RATE = "judge.win_rate"
PAIRED = "paired"
CHOSEN_EPOCH = "select.chosen_epoch"
HEADLINE = (CHOSEN_EPOCH, "train.tokens", "gauntlet.average", *(f"gauntlet.{c}" for c in CATEGORIES))
INTEGERS = (CHOSEN_EPOCH, "train.tokens", "train.rows", "train.seed", "replicates")  # written without ".0"


def summary_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """{name, tags, metrics, curves} per model whose scores are ready; `curves` are per-epoch histories."""
    rows = []
    for model in data["models"]:
        if model.get("status", "ready") != "ready":
            continue
        metrics = gauntlet_metrics(Scores.model_validate(model))  # a row holds its scores' fields
        metrics[CHOSEN_EPOCH] = float(model["epoch"] or 0)
        tokens = 0 if model["kind"] == "baseline" else model.get("train_tokens")
        if tokens is not None:
            metrics["train.tokens"] = float(tokens)
        metrics |= win_rates(model["name"], data["pairs"])
        metrics |= {k: float(model[f]) for k, f in (("train.rows", "rows"), ("train.seed", "seed")) if model.get(f)}
        metrics |= comparison_metrics(model["name"], data.get("comparisons") or {})
        rows.append(
            {
                "name": model["name"],
                "tags": tags(data["study"], model),
                "params": params(model),
                "metrics": metrics,
                "curves": curves(model),
            }
        )
    return rows


def params(model: dict) -> dict[str, str]:
    """What the model is, as MLflow's compare view lists it above the metrics: base, data, size, seed, method
    and the chosen epoch."""
    finetuned = model["kind"] != "baseline"
    values = {
        "base_model": model["base"],
        "dataset": model.get("dataset") if finetuned else "none (base model)",
        "train_rows": model.get("rows"),
        "train_seed": model.get("seed"),
        "method": (model.get("method") or "full") if finetuned else "none",
        "chosen_epoch": model.get("epoch") if finetuned else None,
    }
    return {k: str(v) for k, v in values.items() if v is not None}


def tags(study: str, model: dict) -> dict[str, str]:
    out = {
        "limit.kind": "summary",
        "limit.study": study,
        "limit.run": model["name"],
        "limit.model": model["base"],
        "limit.dataset": model.get("dataset") or "none (base model)",
        "limit.role": model["kind"],
    }
    return out | {f"limit.{k}": model[k] for k in ("group", "series") if model.get(k)}


COMPARED = {  # (comparisons kind, why) -> the metric name of that comparison
    ("gauntlet", "base model"): "gauntlet_average",
    ("gauntlet", "next size"): "gauntlet_average",
    ("win_rate", "even match"): "win_rate_minus_half",
    ("win_rate", "next size"): "win_rate",
}


def mlflow_tables(data: dict[str, Any]) -> dict[str, dict[str, list]]:
    """The paper's two tables in the report's units, as MLflow tables (the parent run's artifacts show them as
    a grid): the gauntlet's row per model, the judge's row per pair."""
    rows = summary_rows(data)
    keys = [k for k in HEADLINE if any(k in r["metrics"] for r in rows)]
    gauntlet: dict[str, list] = {"model": [r["name"] for r in rows]}
    gauntlet |= {t: [r["tags"][f"limit.{t}"] for r in rows] for t in ("role", "dataset")}
    gauntlet |= {k: [as_reported(k, r["metrics"][k]) if k in r["metrics"] else None for r in rows] for k in keys}
    pairs = [p for p in data["pairs"] if p.get("win_rate_a") is not None]
    judged: dict[str, list] = {k: [p[k] for p in pairs] for k in ("a", "b", "prompts")}
    judged["win_rate_a"] = [_percent(p["win_rate_a"]) for p in pairs]
    judged |= {
        f"ci95_{side}": [_percent((p.get("ci95") or [None, None])[i]) for p in pairs]
        for i, side in enumerate(("low", "high"))
    }
    judged["lc_win_rate_a"] = [_percent(p.get("lc_win_rate_a")) for p in pairs]
    return {"gauntlet": gauntlet, "win_rates": judged}


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def comparison_metrics(name: str, comparisons: dict[str, list[dict]]) -> dict[str, float]:
    """Each comparison with `name` as A: `paired.<what>.<B>[.<prompts>].difference` and its interval."""
    out = {}
    for kind, entries in comparisons.items():
        for entry in entries:
            if entry["a"] != name or entry.get("difference") is None:
                continue
            key = f"{PAIRED}.{COMPARED[kind, entry['why']]}.{slug(entry['b'])}"
            key += f".{slug(entry['prompts'])}" if entry.get("prompts") else ""
            out[f"{key}.difference"] = float(entry["difference"])
            if entry.get("ci95"):
                out |= {f"{key}.ci95_low": entry["ci95"][0], f"{key}.ci95_high": entry["ci95"][1]}
                out[f"{key}.distinguishable"] = float(bool(entry["distinguishable"]))
    return out


def replicate_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """{name, tags, metrics, curves} per replicate group with scores: the mean and spread over its seeds."""
    rows = []
    for group in data.get("replicates") or []:
        if not group["average"]["n"] and not any(s["n"] for s in group["categories"].values()):
            continue
        stats = {"gauntlet.average": group["average"]}
        stats |= {f"gauntlet.{k}": v for k, v in group["categories"].items()}
        stats |= {f"per_benchmark.{k}": v for k, v in group["benchmarks"].items()}
        stats |= {f"{WIN_RATE}.{slug(w['prompts'])}.vs.{slug(w['opponent'])}": w for w in group["win_rates"]}
        metrics = {"replicates": float(len(group["models"]))}
        for key, stat in stats.items():
            if stat.get("mean") is not None:
                metrics[key] = stat["mean"]
            if stat.get("std") is not None:
                metrics[f"{key}.std"] = stat["std"]
        epochs = zip(group["seeds"], group["chosen_epochs"], strict=True)
        metrics |= {f"{CHOSEN_EPOCH}.s{seed}": float(epoch) for seed, epoch in epochs if epoch}
        if group.get("rows"):
            metrics["train.rows"] = float(group["rows"])
        rows.append({"name": group["group"], "tags": group_tags(data["study"], group), "metrics": metrics})
    return rows


def group_tags(study: str, group: dict) -> dict[str, str]:
    out = {"limit.kind": "replicates", "limit.study": study, "limit.run": group["group"], "limit.model": group["base"]}
    out["limit.dataset"] = group.get("dataset") or "none"
    return out | ({"limit.series": group["series"]} if group.get("series") else {})


def win_rates(name: str, pairs: list[dict]) -> dict[str, float]:
    """This model's win rate in each judged pair it is in, from its side (B's is 1 - A's: ties are excluded)."""
    out = {}
    for pair in pairs:
        rate, ci = pair.get("win_rate_a"), pair.get("ci95") or [None, None]
        if name not in (pair["a"], pair["b"]) or rate is None:
            continue
        if name == pair["b"]:
            rate, ci = 1 - rate, [None if c is None else 1 - c for c in reversed(ci)]
        key = f"{WIN_RATE}.{slug(pair['prompts'])}.vs.{slug(pair['b'] if name == pair['a'] else pair['a'])}"
        out[key] = rate
        out |= {f"{key}.{side}": v for side, v in zip(("ci95_low", "ci95_high"), ci, strict=True) if v is not None}
    return out


def curves(model: dict) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for entry in model.get("epochs", []):
        values = {"gauntlet.average": entry.get("average")}
        values |= {f"gauntlet.{c}": v for c, v in (entry.get("categories") or {}).items()}
        for key, value in values.items():
            if value is not None:
                out.setdefault(f"per_epoch.{key}", []).append((entry["epoch"], value))
    return out


def columns(rows: list[dict]) -> list[str]:
    """The paper's columns first, then win rates, then the benchmarks."""
    keys = {k for row in rows for k in row["metrics"]}
    rates = sorted(k for k in keys if k.startswith(f"{WIN_RATE}."))
    rest = sorted(keys - set(HEADLINE) - set(rates))
    return [*TAG_COLUMNS, *(k for k in HEADLINE if k in keys), *rates, *rest]


def write_csv(rows: list[dict], path: Path) -> None:
    header = columns(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        for row in rows:
            t = row["tags"]
            kind = t.get("limit.role") or t["limit.kind"]  # a model's role, or "replicates" for a group
            names = {"model": row["name"], "kind": kind, "base_model": t["limit.model"]}
            values = {k: as_reported(k, v) for k, v in row["metrics"].items()}
            writer.writerow({**names, "dataset": t["limit.dataset"], **values})


def as_reported(key: str, value: float) -> int | float:
    """A value as report.md prints it: counts whole, win rates in % to one decimal (their differences and
    bounds too), gauntlet scores to three decimals."""
    if key in INTEGERS or key.startswith(f"{CHOSEN_EPOCH}.") or key.endswith(".distinguishable"):
        return int(value)
    if key.startswith((f"{WIN_RATE}.", f"{PAIRED}.win_rate")):
        return round(100 * value, 1)
    return round(value, 3)
